"""The RESP listener through redis-cli (redis-tools 7.0), as an operator would use it:
the commands edgekvd serves answer as Redis documents, and `redis-cli --pipe` mass insertion
works."""

import re

import edgekv_harness as h


def cli(node, *args, options=()) -> str:
    """Runs redis-cli ARGS against the node (raw output, as when stdout is not a terminal)."""
    r = h.redis_cli(node.resp_port, *args, options=options)
    assert r.returncode == 0, h.describe(r)
    assert r.stderr == b"", h.describe(r)
    return r.stdout.decode("utf-8", "replace").rstrip("\n")


def session(node, *lines: str) -> list[str]:
    """Feeds redis-cli one command per line on standard input: one connection for all."""
    r = h.redis_cli(node.resp_port, input="".join(f"{line}\n" for line in lines).encode())
    assert r.returncode == 0, h.describe(r)
    return r.stdout.decode("utf-8", "replace").split("\n")


def test_ping_echo_and_set_get_del_round_trip(node):
    assert cli(node, "PING") == "PONG"
    assert cli(node, "PING", "hello there") == "hello there"
    assert cli(node, "ECHO", "an echo") == "an echo"
    assert cli(node, "SET", "greeting", "hello world") == "OK"
    assert cli(node, "GET", "greeting") == "hello world"
    assert cli(node, "SET", "greeting", "bonjour") == "OK"
    assert cli(node, "GET", "greeting") == "bonjour"
    assert cli(node, "DEL", "greeting") == "1"
    assert cli(node, "DEL", "greeting") == "0"
    assert cli(node, "GET", "greeting", options=["--no-raw"]) == "(nil)"
    # Command names are case-insensitive.
    assert cli(node, "set", "lower", "case") == "OK"
    assert cli(node, "gEt", "lower") == "case"


def test_ttl_pttl_expire_pexpire_persist(node):
    assert cli(node, "SET", "k", "v", "EX", "100") == "OK"
    ttl = int(cli(node, "TTL", "k"))
    assert 0 < ttl <= 100, ttl
    pttl = int(cli(node, "PTTL", "k"))
    assert 0 < pttl <= 100_000, pttl
    assert pttl > 90_000, f"PTTL {pttl} ms right after EX 100: the TTL was not 100 s"

    assert cli(node, "EXPIRE", "k", "50") == "1"
    ttl = int(cli(node, "TTL", "k"))
    assert 0 < ttl <= 50, ttl
    assert cli(node, "PEXPIRE", "k", "20000") == "1"
    pttl = int(cli(node, "PTTL", "k"))
    assert 0 < pttl <= 20_000, pttl

    assert cli(node, "PERSIST", "k") == "1"
    assert cli(node, "TTL", "k") == "-1"
    assert cli(node, "PTTL", "k") == "-1"
    assert cli(node, "PERSIST", "k") == "0", "PERSIST of a key without a TTL answers 0"
    assert cli(node, "GET", "k") == "v", "PERSIST must keep the value"

    # Missing keys: TTL -2, EXPIRE/PEXPIRE/PERSIST 0 (nothing created).
    assert cli(node, "TTL", "missing") == "-2"
    assert cli(node, "PTTL", "missing") == "-2"
    assert cli(node, "EXPIRE", "missing", "10") == "0"
    assert cli(node, "PEXPIRE", "missing", "10") == "0"
    assert cli(node, "PERSIST", "missing") == "0"
    assert cli(node, "EXISTS", "missing") == "0"

    # A TTL of zero or less deletes the key, as in Redis.
    assert cli(node, "SET", "gone", "v") == "OK"
    assert cli(node, "EXPIRE", "gone", "0") == "1"
    assert cli(node, "EXISTS", "gone") == "0"
    assert cli(node, "SET", "gone", "v") == "OK"
    assert cli(node, "PEXPIRE", "gone", "-5") == "1"
    assert cli(node, "TTL", "gone") == "-2"


def test_exists_counts_repeated_keys(node):
    assert cli(node, "SET", "a", "1") == "OK"
    assert cli(node, "SET", "b", "2") == "OK"
    assert cli(node, "EXISTS", "a") == "1"
    assert cli(node, "EXISTS", "a", "a", "a") == "3"
    assert cli(node, "EXISTS", "a", "missing", "b", "a") == "3"
    assert cli(node, "EXISTS", "missing", "missing") == "0"


def test_mset_and_mget_with_a_missing_key(node):
    assert cli(node, "MSET", "m1", "one", "m2", "two", "m3", "three") == "OK"
    out = cli(node, "MGET", "m1", "missing", "m3", "m2", options=["--no-raw"])
    assert out.split("\n") == ['1) "one"', "2) (nil)", '3) "three"', '4) "two"'], out
    # MSET overwrites.
    assert cli(node, "MSET", "m1", "uno") == "OK"
    assert cli(node, "GET", "m1") == "uno"
    assert "wrong number of arguments for 'mset' command" in cli(node, "MSET", "m1", "x", "m2")


def test_del_and_unlink_return_how_many_keys_existed(node):
    assert cli(node, "MSET", "a", "1", "b", "2", "c", "3", "d", "4") == "OK"
    # A repeated key counts once: the second deletion finds nothing.
    assert cli(node, "DEL", "a", "missing", "b", "a") == "2"
    assert cli(node, "UNLINK", "c", "c", "nope") == "1"
    assert cli(node, "DEL", "a", "b", "c") == "0"
    assert cli(node, "EXISTS", "a", "b", "c", "d") == "1"
    assert cli(node, "GET", "d") == "4"


def test_select_0_only(node):
    assert cli(node, "SELECT", "0") == "OK"
    assert cli(node, "SELECT", "1") == "ERR DB index is out of range"
    assert cli(node, "SELECT", "x") == "ERR value is not an integer or out of range"


def _info_sections(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in text.replace("\r", "").split("\n"):
        if line.startswith("# "):
            current = sections.setdefault(line[2:].strip(), {})
        elif line and current is not None:
            name, sep, value = line.partition(":")
            assert sep, f"INFO line without ':': {line!r}"
            current[name] = value
    return sections


def test_info_has_server_clients_stats_keyspace_and_counts_keys(node):
    sections = _info_sections(cli(node, "INFO"))
    for name in ("Server", "Clients", "Stats", "Keyspace"):
        assert name in sections, f"INFO lacks # {name}: {sorted(sections)}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", sections["Server"]["redis_version"])
    assert sections["Server"]["node_id"] == "node1"
    assert int(sections["Clients"]["connected_clients"]) >= 1
    assert "db0" not in sections["Keyspace"], "an empty node lists no keyspace"

    assert cli(node, "MSET", "k1", "a", "k2", "b", "k3", "c") == "OK"
    keyspace = _info_sections(cli(node, "INFO", "keyspace"))
    assert list(keyspace) == ["Keyspace"], "INFO keyspace answers that section alone"
    assert keyspace["Keyspace"]["db0"].split(",")[0] == "keys=3", keyspace
    assert cli(node, "DEL", "k2") == "1"
    keyspace = _info_sections(cli(node, "INFO", "keyspace"))
    assert keyspace["Keyspace"]["db0"].split(",")[0] == "keys=2", keyspace

    stats = _info_sections(cli(node, "INFO", "stats"))["Stats"]
    assert int(stats["total_commands_processed"]) > 0
    assert int(stats["total_connections_received"]) >= 5
    # The MSET's three writes and the DEL's one, staged or already applied by a sweep.
    assert 0 <= int(stats["staged_writes"]) <= 4, stats
    assert int(stats["apply_batches"]) >= 0, stats
    assert int(stats["checkpoints"]) == 0, stats


def test_client_setname_getname_on_one_connection(node):
    out = session(node, "CLIENT GETNAME", "CLIENT SETNAME tester", "CLIENT GETNAME",
                  "CLIENT SETNAME with-dash.1", "CLIENT GETNAME")
    assert out[:5] == ["", "OK", "tester", "OK", "with-dash.1"], out
    out = session(node, 'CLIENT SETNAME "a b"')
    assert out[0] == "ERR Client names cannot contain spaces, newlines or special characters.", out
    # The name belongs to the connection: a new one has none.
    assert cli(node, "CLIENT", "GETNAME", options=["--no-raw"]) == "(nil)"


def test_command_count_and_hello_2(node):
    count = int(cli(node, "COMMAND", "COUNT"))
    assert count >= 20, count  # at least the commands this suite uses
    out = cli(node, "HELLO", "2").split("\n")
    fields = dict(zip(out[0::2], out[1::2]))
    assert fields["server"] == "edgekv", out
    assert fields["proto"] == "2", out
    assert fields["mode"] == "standalone" and fields["role"] == "master", out
    assert int(fields["id"]) >= 1, out
    assert cli(node, "HELLO", "3") == "NOPROTO unsupported protocol version"


def test_quit_closes_the_session(node):
    out = session(node, "SET q 1", "QUIT")
    assert out[0] == "OK", out
    assert cli(node, "GET", "q") == "1"


def test_pipe_mass_insert_then_read_back(node, tmp_path):
    count = 20_000
    commands = tmp_path / "mass-insert.resp"
    with open(commands, "wb") as f:
        for i in range(count):
            f.write(h.resp_encode("SET", f"mass:{i}", f"value-{i}"))
        f.write(h.resp_encode("SET", "mass:binary", b"\x00\r\n\xff"))
    r = h.redis_cli(node.resp_port, options=["--pipe", "--pipe-timeout", "10"],
                    input=commands.read_bytes(), timeout=60)
    assert r.returncode == 0, h.describe(r)
    assert b"errors: 0, replies: %d" % (count + 1) in r.stdout, h.describe(r)

    for i in (0, 1, 4999, 12345, count - 1):
        assert cli(node, "GET", f"mass:{i}") == f"value-{i}"
    out = cli(node, "MGET", "mass:7", "mass:-1", f"mass:{count - 2}", options=["--no-raw"])
    assert out.split("\n") == ['1) "value-7"', "2) (nil)", f'3) "value-{count - 2}"'], out
    assert cli(node, "EXISTS", *[f"mass:{i}" for i in range(0, count, 1000)]) == str(count // 1000)
    keyspace = _info_sections(cli(node, "INFO", "keyspace"))["Keyspace"]
    assert keyspace["db0"].split(",")[0] == f"keys={count + 1}", keyspace
    r = h.redis_cli(node.resp_port, "GET", "mass:binary")
    assert r.stdout == b"\x00\r\n\xff\n", h.describe(r)

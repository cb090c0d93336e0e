"""Keys and values are arbitrary bytes: NULs, high bytes, newlines, large values."""

import random

import edgekv_harness as h
from edgekv_harness import describe, kvcli


def test_nul_bytes_in_keys_and_values(node):
    pairs = {
        b"a\x00b": b"\x00\x01\x02\x00\xff",
        b"\x00": b"just-a-nul-key",
        b"\x00\x00": b"two-nuls",
        b"a": b"prefix of a\\0b",
        b"a\x00c": b"",  # empty value is a value, not an absence
        b"trailing\x00": b"\x00" * 100,
        b"\xff\xfe\n\r\t": b"\n\r\n\x00\xff" * 300,  # above the compression threshold
    }
    with node.client() as c:
        for key, value in pairs.items():
            resp = c.put(key, value)
            assert resp.code == h.pb.OK, (key, h.code_name(resp.code), resp.message)
        for key, value in pairs.items():
            resp = c.get(key)
            assert resp.code == h.pb.OK, (key, h.code_name(resp.code), resp.message)
            assert resp.get.value == value, key
        # Keys that share a prefix up to a NUL are distinct keys.
        for missing in [b"a\x00", b"a\x00b\x00", b"\x00\x00\x00", b"trailing"]:
            assert c.get(missing).code == h.pb.NOT_FOUND, missing
        assert c.delete(b"a\x00b").code == h.pb.OK
        assert c.get(b"a\x00b").code == h.pb.NOT_FOUND
        assert c.get(b"a").get.value == b"prefix of a\\0b"
        assert c.status().status.keys == len(pairs) - 1


def test_one_mib_value_through_kvcli_stdin(node):
    rng = random.Random(20240611)
    value = rng.randbytes(1 << 20)
    value = b"\x00\n" + value[2:-2] + b"\n\x00"  # NULs and newlines at both ends
    assert len(value) == 1 << 20

    r = kvcli("put", "blob", "-", endpoint=node.client_endpoint, input=value)
    assert r.returncode == h.EXIT_OK, describe(r)

    r = kvcli("get", "blob", endpoint=node.client_endpoint)
    assert r.returncode == h.EXIT_OK, describe(r)
    assert len(r.stdout) == len(value)
    assert r.stdout == value

    with node.client() as c:
        resp = c.get(b"blob")
    assert resp.code == h.pb.OK
    assert resp.get.value == value


def test_compressible_large_value_round_trips(node):
    # Above compress-threshold-bytes, highly compressible: stored zstd-compressed.
    value = (b"edgekv " * 150_000)[: 1 << 20]
    r = kvcli("put", "text", "-", endpoint=node.client_endpoint, input=value)
    assert r.returncode == h.EXIT_OK, describe(r)
    r = kvcli("get", "text", endpoint=node.client_endpoint)
    assert r.returncode == h.EXIT_OK, describe(r)
    assert r.stdout == value


def test_stdin_value_with_no_trailing_newline_is_kept_exact(node):
    for value in [b"", b"no newline", b"one newline\n", b"\n\n"]:
        r = kvcli("put", "exact", "-", endpoint=node.client_endpoint, input=value)
        assert r.returncode == h.EXIT_OK, describe(r)
        r = kvcli("get", "exact", endpoint=node.client_endpoint)
        assert (r.returncode, r.stdout) == (h.EXIT_OK, value), describe(r)


def test_default_value_limit_is_4_mib_inclusive(node):
    limit = 4 * 1024 * 1024
    value = bytes(range(256)) * (limit // 256)
    with node.client(timeout=30.0) as c:
        resp = c.put(b"at-limit", value)
        assert resp.code == h.pb.OK, (h.code_name(resp.code), resp.message)
        resp = c.put(b"over-limit", value + b"!")
        assert resp.code == h.pb.INVALID_ARGUMENT, h.code_name(resp.code)
        assert "max-value-bytes" in resp.message
        assert c.get(b"over-limit").code == h.pb.NOT_FOUND
        resp = c.put(b"k" * 1024, b"v")  # max-key-bytes 1024 by default
        assert resp.code == h.pb.OK
        assert c.put(b"k" * 1025, b"v").code == h.pb.INVALID_ARGUMENT
    r = kvcli("get", "at-limit", endpoint=node.client_endpoint)
    assert r.returncode == h.EXIT_OK and r.stdout == value

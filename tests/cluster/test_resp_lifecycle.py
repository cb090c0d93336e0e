"""The RESP listener's life cycle: SIGTERM with RESP clients connected exits 0 and closes
them; an empty resp-endpoint disables the listener while the ZeroMQ API works; a RESP port
already in use fails start-up with exit 1 and one stderr line naming resp-endpoint."""

import socket

import edgekv_harness as h
from edgekv_harness import describe, kvcli


def test_listens_on_client_feed_resp_gossip_and_peer_endpoints(node):
    assert h.listening_tcp_ports(node.pid) == {node.client_port, node.feed_port, node.resp_port,
                                               node.gossip_port, node.peer_port}


def test_sigterm_with_resp_clients_connected_exits_0(node):
    idle = h.RespConn(node.resp_port)
    half = h.RespConn(node.resp_port)
    busy = h.RespConn(node.resp_port)
    unread = h.RespConn(node.resp_port)
    try:
        assert idle.command("PING") == "PONG"
        half.send(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$10\r\nonly")  # a command cut short
        for i in range(200):
            busy.send(h.resp_encode("SET", f"busy{i}", "v"))
        assert busy.replies(200) == ["OK"] * 200
        unread.send(b"".join(h.resp_encode("SET", f"unread{i}", "v") for i in range(500)))
        with node.client() as native:
            h.wait_for(lambda: native.stats()["resp_connections"] == 4, 10,
                       "the four RESP connections")
        assert node.stop() == 0, node.stderr_text()
        for name, conn in [("idle", idle), ("half", half), ("busy", busy)]:
            assert conn.closed_by_peer(5.0), f"the {name} connection stayed open"
    finally:
        for conn in (idle, half, busy, unread):
            conn.close()
    node.start(keep_ports=True)
    with h.RespConn(node.resp_port) as c:
        assert c.command("GET", "busy199") == b"v", "an acknowledged write was lost"
        assert c.command("EXISTS", "half") == 0, "a command cut short was executed"


def test_empty_resp_endpoint_disables_the_listener(daemons):
    # Fixed endpoints make the harness pass `--resp-endpoint ""` (see Daemon.resp_endpoint).
    client_port, feed_port = h.free_port(), h.free_port()
    while feed_port == client_port:
        feed_port = h.free_port()
    node = daemons.new("node1", endpoints=(h.tcp_endpoint(client_port),
                                           h.tcp_endpoint(feed_port)))
    assert "--resp-endpoint" in node.command() and node.resp_endpoint == ""
    node.start()
    assert h.listening_tcp_ports(node.pid) == {client_port, feed_port, node.gossip_port,
                                               node.peer_port}, \
        "edgekvd listens on a port besides its client, feed, gossip and peer endpoints"
    r = kvcli("put", "k", "v", endpoint=node.client_endpoint)
    assert r.returncode == h.EXIT_OK, describe(r)
    with node.client() as native:
        assert native.get(b"k").get.value == b"v"
        assert native.stats()["resp_connections_received"] == 0


def test_resp_port_in_use_fails_with_one_line(daemons):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        node = daemons.new("node1")
        node.client_port, node.feed_port = h.free_port(), h.free_port()
        node.resp_port = busy.getsockname()[1]
        rc, stderr = node.run_to_exit()
    assert rc == 1, f"exit status {rc}, stderr:\n{stderr}"
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}:\n{stderr}"
    assert lines[0].startswith("edgekvd: "), lines[0]
    assert "resp-endpoint" in lines[0] and str(node.resp_port) in lines[0], lines[0]
    assert not node.data_dir.exists(), "a node that cannot bind must not create its data dir"


def test_resp_port_held_by_another_edgekvd_fails_and_the_first_goes_on(daemons):
    first = daemons.start("node1")
    second = daemons.new("node2")
    second.client_port, second.feed_port = h.free_port(), h.free_port()
    second.resp_port = first.resp_port
    rc, stderr = second.run_to_exit()
    assert rc == 1 and "resp-endpoint" in stderr and len(stderr.splitlines()) == 1, stderr
    with h.RespConn(first.resp_port) as c:
        assert c.command("SET", "k", "v") == "OK"
        assert c.command("GET", "k") == b"v"

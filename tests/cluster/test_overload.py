"""A full write queue: writes are refused OVERLOADED at once (not queued, not lost, not
half-applied), the node keeps serving, and kvcli maps OVERLOADED to exit 3."""

import time

import edgekv_harness as h
from edgekv_harness import pb


def test_full_write_queue_refuses_writes_and_keeps_serving(daemons):
    node = daemons.start("node1", args=["--write-queue-max", "1", "--group-commit-max", "1",
                                        "--sync", "full", "--log-level", "error"])
    clients = [node.client(timeout=30.0) for _ in range(4)]
    outcome: dict[bytes, int] = {}
    try:
        deadline = time.monotonic() + 60
        burst = 0
        while not any(code == pb.OVERLOADED for code in outcome.values()):
            assert time.monotonic() < deadline, "no write was ever refused OVERLOADED"
            burst += 1
            sent = {}
            for n, c in enumerate(clients):
                for i in range(50):
                    key = b"b%d:c%d:%02d" % (burst, n, i)
                    sent[(n, c.send(c.put_request(key, key)))] = key
            for (n, req_id), key in sent.items():
                resp = clients[n].wait(req_id)
                assert resp.code in (pb.OK, pb.OVERLOADED), (key, h.code_name(resp.code))
                if resp.code == pb.OVERLOADED:
                    assert "write" in resp.message and "queue" in resp.message, resp.message
                    assert not resp.HasField("put")
                outcome[key] = resp.code
        c = clients[0]
        got = c.get_many(list(outcome))
        for key, code in outcome.items():
            if code == pb.OK:
                assert got[key].code == pb.OK and got[key].get.value == key, key
            else:
                assert got[key].code == pb.NOT_FOUND, (key, h.code_name(got[key].code))
        ok = sum(1 for code in outcome.values() if code == pb.OK)
        stats = c.stats()
        assert stats["keys"] == ok == stats["store_puts_applied"], (ok, stats)
        assert stats["errors"] == len(outcome) - ok, stats
        assert stats["writes_in_flight"] == 0
        # Once the burst is over the queue drains and single writes go through again.
        assert c.put(b"after", b"burst").code == pb.OK
    finally:
        for c in clients:
            c.close()

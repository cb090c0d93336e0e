"""Read-your-writes on one node: once a put or delete is acknowledged, every later read
on that node returns it (or something newer). The write is acknowledged only after its
commit (store.h), and reads go to the same committed state."""

import pytest

import edgekv_harness as h
from edgekv_harness import pb

ROUNDS = 12
KEYS = 40


@pytest.mark.parametrize("partitions", [1, 8, 64])
def test_get_right_after_an_acknowledged_write_sees_it(daemons, partitions):
    node = daemons.start("node1", args=["--partitions", str(partitions)])
    stale = []
    with node.client() as c:
        for r in range(ROUNDS):
            keys = [b"r%d:k%02d" % (r % 3, i) for i in range(KEYS)]
            # A pipelined burst first: several commit groups in flight at once.
            c.put_many((k, b"burst-%d" % r) for k in keys)
            for i, k in enumerate(keys):
                if i % 5 == 4:
                    assert c.delete(k).code == pb.OK
                    got = c.get(k)
                    if got.code != pb.NOT_FOUND:
                        stale.append((k, "deleted", got.get.value))
                    continue
                value = b"new-%d-%d" % (r, i)
                resp = c.put(k, value)
                assert resp.code == pb.OK
                got = c.get(k)
                if got.code != pb.OK or got.get.value != value:
                    stale.append((k, value, got.get.value if got.code == pb.OK
                                  else h.code_name(got.code)))
    assert not stale, (f"{len(stale)} of {ROUNDS * KEYS} reads right after an acknowledged "
                       f"write returned older state (key, written, read): {stale[:5]}")

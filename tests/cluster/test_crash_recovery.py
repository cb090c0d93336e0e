"""kill -9 in the middle of a burst of writes: every acknowledged write survives.

Eight client threads (each its own DEALER connection, pipelined) put and delete keys of
their own; each key's history of operations sent and acknowledged is recorded. The
daemon is SIGKILLed while the burst is running, restarted, and every key must hold the
outcome of its last acknowledged operation or of one sent after it (which may or may not
have committed): never an older one, never anything else. Three rounds per sync mode,
so recovery of a data directory that has already been recovered is covered too.
"""

import os
import signal

import pytest

import edgekv_harness as h
import write_history as wh
from edgekv_harness import pb

THREADS = 8
ACKED_PER_ROUND = 3000
ROUNDS = 3
# Keys w<thread>:<n>, one write in five a delete, values of 20 bytes and more than the
# compression threshold.
WORKLOAD = wh.Workload(prefix=b"w", keys=300, delete_every=5, filler=b"x", small_pad=20,
                       large_pad=1500)


def _burst_and_kill(node, round_no, histories):
    burst = wh.Burst(node.client_endpoint, round_no, histories, WORKLOAD)
    try:
        h.wait_for(lambda: burst.acked() >= ACKED_PER_ROUND, 90,
                   f"{ACKED_PER_ROUND} acknowledged writes")
        # The kill comes in the middle of the burst: right after the node acknowledged
        # another write, while the writers keep their windows of requests in flight.
        seen = burst.acked()
        h.wait_for(lambda: burst.acked() > seen, 10, "the node to acknowledge more writes",
                   interval=0.0005)
        os.kill(node.pid, signal.SIGKILL)
        assert node.proc.wait(h.STOP_TIMEOUT) == -signal.SIGKILL
    finally:
        burst.stop()
    burst.check()
    return burst.acked()


def _verify(node, histories, sync):
    """Checks every key against its history; returns histories reset to what was found."""
    with node.client(timeout=30.0) as c:
        read = wh.ReadBack(c, histories)
        problems = read.problems
        for key, history, found in read.found:
            if found not in history.allowed():
                last = history.sent[history.acked]
                problems.append(
                    f"{key!r}: found {found!r:.40}, but the last acknowledged operation "
                    f"(#{history.acked} of {len(history.sent) - 1}) left {last!r:.40}")
        assert not problems, (f"--sync {sync}: {len(problems)} keys lost acknowledged "
                              f"writes:\n" + "\n".join(problems[:10]))
        assert c.status().status.keys == read.live
    return read.fresh


@pytest.mark.parametrize("sync", ["normal", "full"])
def test_acknowledged_writes_survive_kill_9(daemons, sync):
    node = daemons.new("node1", args=["--sync", sync, "--partitions", "16"])
    histories = [dict() for _ in range(THREADS)]
    for round_no in range(ROUNDS):
        node.start()
        _burst_and_kill(node, round_no, histories)
        node.start()
        histories = _verify(node, histories, sync)
        assert node.stop() == 0
    # The directory is usable as ever: a clean restart after three crashes.
    node.start()
    with node.client() as c:
        assert c.put(b"after-crashes", b"ok").code == pb.OK
        assert c.get(b"after-crashes").get.value == b"ok"

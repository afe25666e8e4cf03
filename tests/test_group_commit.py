"""Group commit: concurrent callers' items go out together, each caller returns once its own
item is written, and a failed write fails exactly the callers whose items it held."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from shared.edge.group_commit import GroupCommit


def test_a_lone_caller_writes_its_item_at_once() -> None:
    batches: list[list[int]] = []
    commit: GroupCommit[int] = GroupCommit(lambda items: batches.append(list(items)))
    commit.submit(1)
    commit.submit(2)
    assert batches == [[1], [2]]


def test_callers_arriving_during_a_write_share_the_next_one() -> None:
    batches: list[list[int]] = []
    first_started, release = threading.Event(), threading.Event()

    def write(items: Sequence[int]) -> None:
        if not batches:
            first_started.set()
            assert release.wait(10)
        batches.append(list(items))

    commit: GroupCommit[int] = GroupCommit(write, max_items=100)
    done: list[int] = []

    def caller(n: int) -> None:
        commit.submit(n)
        done.append(n)

    leader = threading.Thread(target=caller, args=(0,))
    leader.start()
    assert first_started.wait(10)
    others = [threading.Thread(target=caller, args=(n,)) for n in range(1, 9)]
    for t in others:
        t.start()
    time.sleep(0.2)  # all eight are waiting behind the first write
    assert done == []
    release.set()
    for t in [leader, *others]:
        t.join(10)
    assert batches[0] == [0]
    assert sorted(batches[1]) == list(range(1, 9))  # one write for the eight
    assert len(batches) == 2
    assert sorted(done) == list(range(9))


def test_a_batch_is_cut_at_max_items() -> None:
    batches: list[list[int]] = []
    gate = threading.Event()

    def write(items: Sequence[int]) -> None:
        if not batches:
            assert gate.wait(10)
        batches.append(list(items))

    commit: GroupCommit[int] = GroupCommit(write, max_items=3)
    threads = [threading.Thread(target=commit.submit, args=(n,)) for n in range(8)]
    threads[0].start()
    time.sleep(0.1)
    for t in threads[1:]:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(10)
    assert sorted(n for batch in batches for n in batch) == list(range(8))
    assert max(len(batch) for batch in batches) == 3


def test_a_failed_write_fails_its_callers_only() -> None:
    gate = threading.Event()
    calls: list[list[int]] = []

    def write(items: Sequence[int]) -> None:
        calls.append(list(items))
        if len(calls) == 1:
            assert gate.wait(10)
            return
        if len(calls) == 2:
            raise OSError("storage said no")

    commit: GroupCommit[int] = GroupCommit(write)
    outcomes: dict[int, str] = {}

    def caller(n: int) -> None:
        try:
            commit.submit(n)
            outcomes[n] = "ok"
        except OSError as exc:
            outcomes[n] = str(exc)

    first = threading.Thread(target=caller, args=(0,))
    first.start()
    time.sleep(0.1)
    failing = [threading.Thread(target=caller, args=(n,)) for n in (1, 2)]
    for t in failing:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in [first, *failing]:
        t.join(10)
    assert outcomes == {0: "ok", 1: "storage said no", 2: "storage said no"}
    commit.submit(3)  # the committer is usable again
    assert calls[-1] == [3]
    with pytest.raises(OSError, match="x"):
        GroupCommit(lambda items: (_ for _ in ()).throw(OSError("x"))).submit(1)

"""The group-commit queue: whatever is queued while a batch is handled forms the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from actors._writer import Coalescer


class Handler:
    """Records each list it is given; holds the first ``hold`` calls until released."""

    def __init__(self, hold: int = 0) -> None:
        self.calls: list[list[int]] = []
        self.hold = hold
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.in_flight = self.most_in_flight = 0

    async def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.calls.append(list(items))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if len(self.calls) <= self.hold:
                self.entered.set()
                await self.release.wait()
            return [i * 10 for i in items]
        finally:
            self.in_flight -= 1


async def test_a_lone_item_is_handled_at_once() -> None:
    handle = Handler()
    assert await Coalescer(handle).submit(4) == 40
    assert handle.calls == [[4]]


async def test_items_submitted_together_go_in_one_list() -> None:
    handle = Handler()
    queue = Coalescer(handle)
    results = await asyncio.gather(*(queue.submit(i) for i in range(20)))
    assert results == [i * 10 for i in range(20)]
    assert handle.calls == [list(range(20))]


async def test_items_queued_during_a_batch_form_the_next_batch() -> None:
    handle = Handler(hold=1)
    queue = Coalescer(handle)
    first = queue.enqueue(1)
    await handle.entered.wait()
    later = [queue.enqueue(i) for i in (2, 3, 4)]
    handle.release.set()
    assert await asyncio.gather(first, *later) == [10, 20, 30, 40]
    assert handle.calls == [[1], [2, 3, 4]]


async def test_batches_are_at_most_max_batch_long() -> None:
    handle = Handler()
    queue = Coalescer(handle, max_batch=4)
    results = await asyncio.gather(*(queue.submit(i) for i in range(10)))
    assert results == [i * 10 for i in range(10)]
    assert handle.calls == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


@pytest.mark.parametrize("concurrency", [1, 2, 3])
async def test_no_more_batches_than_concurrency_are_handled_at_once(concurrency: int) -> None:
    handle = Handler(hold=concurrency)
    queue = Coalescer(handle, max_batch=1, concurrency=concurrency)
    pending = [queue.enqueue(i) for i in range(6)]
    await handle.entered.wait()
    await queue_settles()
    assert len(handle.calls) == concurrency  # the others wait for a free slot
    handle.release.set()
    assert await asyncio.gather(*pending) == [i * 10 for i in range(6)]
    assert handle.most_in_flight == concurrency
    assert sorted(i for call in handle.calls for i in call) == list(range(6))


async def test_each_item_gets_its_own_result_or_error() -> None:
    async def handle(items: list[int]) -> Sequence[int | BaseException]:
        return [ValueError(i) if i % 2 else i for i in items]

    queue = Coalescer(handle)
    results = await asyncio.gather(*(queue.submit(i) for i in range(4)), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["int", "ValueError", "int", "ValueError"]
    assert results[0::2] == [0, 2]


async def test_an_error_raised_by_handle_goes_to_every_item_of_that_batch_only() -> None:
    calls: list[list[int]] = []
    entered, release = asyncio.Event(), asyncio.Event()

    async def handle(items: list[int]) -> Sequence[int | BaseException]:
        calls.append(items)
        if len(calls) == 1:
            entered.set()
            await release.wait()
            raise RuntimeError("database down")
        return items

    queue = Coalescer(handle)
    first = [queue.enqueue(i) for i in (1, 2)]
    await entered.wait()
    second = [queue.enqueue(i) for i in (3, 4)]
    release.set()
    failed = await asyncio.gather(*first, return_exceptions=True)
    assert [str(e) for e in failed] == ["database down", "database down"]
    assert await asyncio.gather(*second) == [3, 4]
    assert calls == [[1, 2], [3, 4]]


async def test_an_item_whose_caller_went_away_is_not_handled() -> None:
    handle = Handler()
    queue = Coalescer(handle)
    kept, gone, last = queue.enqueue(1), queue.enqueue(2), queue.enqueue(3)
    gone.cancel()
    assert list(await asyncio.gather(kept, last)) == [10, 30]
    assert handle.calls == [[1, 3]]


async def test_a_batch_of_only_cancelled_items_is_skipped() -> None:
    handle = Handler()
    queue = Coalescer(handle)
    for future in [queue.enqueue(1), queue.enqueue(2)]:
        future.cancel()
    await queue.drained()
    assert handle.calls == []


async def test_a_caller_going_away_mid_batch_does_not_disturb_the_others() -> None:
    handle = Handler(hold=1)
    queue = Coalescer(handle)
    gone, kept = queue.enqueue(1), queue.enqueue(2)
    await handle.entered.wait()
    gone.cancel()
    handle.release.set()
    assert await kept == 20
    assert gone.cancelled()


async def test_drained_waits_for_everything_queued() -> None:
    handle = Handler(hold=1)
    queue = Coalescer(handle, max_batch=2)
    pending = [queue.enqueue(i) for i in range(5)]
    await handle.entered.wait()
    waiter = asyncio.ensure_future(queue.drained())
    await queue_settles()
    assert not waiter.done()
    handle.release.set()
    await waiter
    assert all(f.done() for f in pending)
    assert [f.result() for f in pending] == [i * 10 for i in range(5)]


async def test_drained_returns_at_once_when_idle() -> None:
    await Coalescer(Handler()).drained()


async def test_an_item_queued_right_after_the_previous_result_is_handled() -> None:
    handle = Handler()
    queue = Coalescer(handle)
    assert await queue.submit(1) == 10
    second = queue.enqueue(2)  # the previous drain task has returned but is still "running"
    await queue.drained()
    assert second.done()
    assert second.result() == 20


async def queue_settles() -> None:
    """Let every ready task run until it blocks (no time passes)."""
    for _ in range(5):
        await asyncio.sleep(0)

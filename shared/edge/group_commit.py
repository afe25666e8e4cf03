"""Group commit: concurrent callers' writes of one kind go out together, and each caller returns
only once its own item is written (or raises what the write raised).

The databases' trick for many small durable writes: the first caller to find no write in
flight writes (its batch is what is waiting, itself included); callers arriving meanwhile wait
and are written by the next batch, which the first waiter of that batch leads. Nothing is
buffered past its caller's return and there is no background thread, so an acknowledged report
has everything written that it needs and a crash loses nothing the redelivery would not write
again. At low load a batch is one item (no added latency); under load batches grow with the
number of callers waiting, so the requests per item fall as the load rises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class _Slot(Generic[T]):
    __slots__ = ("error", "item", "lead", "ready")

    def __init__(self, item: T) -> None:
        self.item = item
        self.ready = threading.Event()
        self.lead = False  # woken to write the next batch, not because it was written
        self.error: BaseException | None = None


class GroupCommit(Generic[T]):
    def __init__(self, write: Callable[[Sequence[T]], None], max_items: int = 100) -> None:
        self._write = write
        self.max_items = max_items
        self._waiting: list[_Slot[T]] = []
        self._busy = False
        self._lock = threading.Lock()

    def submit(self, item: T) -> None:
        slot = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            leads = not self._busy
            self._busy = True
        if not leads:
            slot.ready.wait()
            if not slot.lead:
                if slot.error is not None:
                    raise slot.error
                return
        self._lead()
        if slot.error is not None:
            raise slot.error

    def _lead(self) -> None:
        """Write what is waiting (up to max_items), then hand the next batch to its first
        waiter, or mark the committer idle."""
        with self._lock:
            batch = self._waiting[: self.max_items]
            del self._waiting[: self.max_items]
        error: BaseException | None = None
        try:
            self._write([slot.item for slot in batch])
        except BaseException as exc:  # handed to every caller of the batch, raised by each
            error = exc
        with self._lock:
            following = self._waiting[0] if self._waiting else None
            if following is None:
                self._busy = False
            else:
                following.lead = True
        for slot in batch:
            slot.error = error
            slot.lead = False
            slot.ready.set()
        if following is not None:
            following.ready.set()

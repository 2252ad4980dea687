"""A process-wide budget of bytes for image decodes running at once.

Each decode first reserves what it will really spend (:meth:`core.imageio.ImageInfo.decode_cost`:
the decoder's buffers, not only the pixels it returns) and gives it back when done, so however
many threads decode at once (gunicorn's threads serving thumbnails, the tagger's decode pool,
``validate``'s), their decodes together stay within the budget (``IMGTAG_DECODE_MEMORY_MB``).
A decode that does not fit waits until enough is given back, in arrival order; a caller that
must answer soon (a web request) waits at most ``timeout`` seconds and then gets
:class:`DecodeBusy`, which the catalog answers with 503 and ``Retry-After``. No single image may
cost more than the budget (``IMGTAG_MAX_DECODE_BYTES`` is at most ``IMGTAG_DECODE_MEMORY_MB``);
one that does, given explicit limits, waits for the whole budget and takes it alone.

The budget is one per process (:func:`process_budget`): entry points size it from their settings
(:func:`configure`); until then it has :data:`DEFAULT_CAPACITY`.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Iterator

from core.errors import Busy

DEFAULT_CAPACITY = 1024 * 1024 * 1024


class DecodeBusy(Busy, TimeoutError):
    """Decodes already running hold the process's decode memory; try again in a few seconds."""

    reason = "decode_busy"


class DecodeBudget:
    """At most ``capacity`` bytes reserved at once, first come first served.

    Args:
        capacity: bytes the decodes of this process may hold together.
    """

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError(f"a decode budget needs a positive capacity, not {capacity}")
        self.capacity = int(capacity)
        self._held = 0
        self._peak = 0
        self._condition = threading.Condition()
        self._queue: deque[int] = deque()  # tickets of the waiting reservations, in order
        self._tickets = itertools.count()

    @property
    def held(self) -> int:
        """Bytes reserved now."""
        return self._held

    @property
    def peak(self) -> int:
        """The most bytes reserved at once since this budget was made."""
        return self._peak

    @contextlib.contextmanager
    def reserve(self, nbytes: int, *, timeout: float | None = None, name: str = "an image") -> Iterator[int]:
        """Hold ``nbytes`` (at most the capacity) for the ``with`` block.

        Args:
            nbytes: what the decode will spend.
            timeout: seconds to wait for room (None: as long as it takes).
            name: the image, for the message of :class:`DecodeBusy`.

        Raises:
            DecodeBusy: no room within ``timeout`` seconds.
        """
        amount = max(0, min(int(nbytes), self.capacity))
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            ticket = next(self._tickets)
            self._queue.append(ticket)
            try:
                while self._queue[0] != ticket or self._held + amount > self.capacity:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise DecodeBusy(
                            f"{name}: decoding it needs {amount / 2**20:,.0f} MiB and other images being "
                            f"decoded hold {self._held / 2**20:,.0f} of the {self.capacity / 2**20:,.0f} MiB "
                            "this process may decode with at once (IMGTAG_DECODE_MEMORY_MB); try again in a "
                            "few seconds",
                            retry_after=max(1, round(timeout or 1)),
                        )
                    self._condition.wait(remaining)
            finally:
                self._queue.remove(ticket)
                self._condition.notify_all()  # the next in line may fit now
            self._held += amount
            self._peak = max(self._peak, self._held)
        try:
            yield amount
        finally:
            with self._condition:
                self._held -= amount
                self._condition.notify_all()


_lock = threading.Lock()
_budget: DecodeBudget | None = None


def process_budget() -> DecodeBudget:
    """This process's budget (made with :data:`DEFAULT_CAPACITY` if no entry point sized it)."""
    global _budget
    with _lock:
        if _budget is None:
            _budget = DecodeBudget(DEFAULT_CAPACITY)
        return _budget


def configure(capacity: int) -> DecodeBudget:
    """Size this process's budget (entry points, from ``Settings.decode_memory_bytes``).

    A budget of another size replaces the current one; decodes holding the old one finish on it.
    """
    global _budget
    with _lock:
        if _budget is None or _budget.capacity != int(capacity):
            _budget = DecodeBudget(capacity)
        return _budget

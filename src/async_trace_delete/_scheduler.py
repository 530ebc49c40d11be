"""The engine-wide gate every server call passes through.

Four things are shared by all jobs on one server, and enforced here:

* **fair slots** — at most ``limit`` calls in flight; when a slot frees it goes to the
  next *job* in round-robin order (not the next request), so a job with many ID chunks
  cannot starve a small job;
* **the concurrency limit** — ``limit`` comes from a :class:`~._controls.ConcurrencyLimit`
  fed each call's result (the adaptive :class:`~._concurrency.ConcurrencyController` settles
  at 1 on SQLite and opens up on a backend that scales; :class:`~._concurrency.FixedLimit`
  keeps it constant);
* **a shared rate** — a :class:`~._pacing.Pacer` spaces call starts evenly (no bursts) at
  the configured rate, and every server call (deletes and searches alike) passes through it;
* **throttling for everyone** — a 429/503 (or a retry over the run's budget) pauses every
  job until the server's ``Retry-After`` (or the backoff) has passed, and a
  :class:`~._pacing.RateThrottle` halves the shared rate once per episode and lets it recover
  step by step on success; the pacer enforces the rate it decides.

Waits run on anyio (an :class:`anyio.Event` per waiting call), the pause and the quiet gap on
the engine's clock and sleep.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

import anyio

from ._batching import Outcome
from ._controls import ConcurrencyLimit
from ._events import ConcurrencyChanged, Event, Throttled
from ._pacing import Pacer, RateThrottle

__all__ = ["Scheduler"]


class _Waiter:
    """One call waiting for a slot; ``granted`` once :meth:`Scheduler._dispatch` gave it one."""

    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.granted = False


class Scheduler:
    """Fair, rate-limited, concurrency-limited admission of server calls.

    Args:
        limit: Decides how many calls may be in flight.
        pacer: Spaces call starts; its rate when the scheduler is built is the configured
            rate, which throttling cuts and restores.
        file_pacer: Spaces the artifact API's calls (their own rate); ``None``: ``pacer``.
        file_slots: Artifact API calls in flight at most (their own slots: the concurrency
            limit is learnt from deletes, which hold the database; removing a folder does not).
        clock: Monotonic seconds.
        sleep: Awaitable sleep on that clock (injected in tests).
        emit: Sends an event to the engine's hooks.
        origin: The clock reading event times are measured from (the engine's opening).
    """

    def __init__(
        self,
        *,
        limit: ConcurrencyLimit,
        pacer: Pacer,
        file_pacer: Pacer | None = None,
        file_slots: int = 4,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        emit: Callable[[Event], None],
        origin: float = 0.0,
    ) -> None:
        self._origin = origin  # event times are seconds since the engine opened
        self._limit = limit
        self._pacer = pacer
        self._file_pacer = file_pacer if file_pacer is not None else pacer
        self._file_slots = anyio.CapacityLimiter(file_slots)
        self._throttle = RateThrottle(pacer.rate)
        self._clock = clock
        self._sleep = sleep
        self._emit = emit
        self._in_flight = 0
        self._queue: OrderedDict[object, deque[_Waiter]] = OrderedDict()
        self._waiting = 0  # waiters in the queue (kept, not summed: hundreds of jobs)
        self._paused_until = 0.0
        self._quiet_until = 0.0

    @property
    def limit(self) -> int:
        """Calls allowed in flight now."""
        return self._limit.limit

    @property
    def in_flight(self) -> int:
        """Calls in flight now."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Calls ready to go but waiting for a slot."""
        return self._waiting

    @property
    def rate(self) -> float:
        """The shared rate in force (calls per second)."""
        return self._throttle.rate

    async def acquire(self, job: object) -> None:
        """Wait for an in-flight slot for ``job`` (granted round-robin across jobs).

        Cancelling the wait gives nothing up: a waiter cancelled before its turn leaves the
        queue, one cancelled just after it was granted a slot hands the slot on. Give the
        slot back with :meth:`release`.
        """
        if self._in_flight < self.limit and not self._queue:
            self._in_flight += 1
            return
        waiter = _Waiter()
        self._queue.setdefault(job, deque()).append(waiter)
        self._waiting += 1
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                self.release()  # granted just as we were cancelled: hand the slot on
            else:
                self._forget(job, waiter)
            raise

    def release(self) -> None:
        """Give back a slot taken with :meth:`acquire`."""
        self._in_flight -= 1
        self._dispatch()

    async def acquire_file_slot(self) -> None:
        """Wait for one of the artifact API's slots; give it back with
        :meth:`release_file_slot`."""
        await self._file_slots.acquire()

    def release_file_slot(self) -> None:
        """Give back a slot taken with :meth:`acquire_file_slot`."""
        self._file_slots.release()

    async def pace(self, *, files: bool = False) -> None:
        """Wait out any shared pause and the quiet gap, then the shared rate.

        An artifact API call (``files``) waits out the shared pause (a server that pushed
        back pushed back on everyone), not the quiet gap (that is other clients' turn at the
        database, which removing a folder does not take), then the artifact API's own rate.
        A pause or a quiet gap that begins while the pacer makes the call wait holds it too.
        """
        pacer = self._file_pacer if files else self._pacer

        def held_until() -> float:
            return self._paused_until if files else max(self._paused_until, self._quiet_until)

        while True:
            now = self._clock()
            hold_until = held_until()
            if hold_until > now:
                await self._sleep(hold_until - now)
                continue
            await pacer.wait()
            if held_until() <= self._clock():
                return

    def record(
        self, *, deleted: int, latency: float, outcome: Outcome, quiet_gap: float = 0.0
    ) -> None:
        """Feed one finished call to the concurrency limit (and the rate's recovery).

        Args:
            deleted: Traces the call deleted.
            latency: Seconds it took.
            outcome: How it ended.
            quiet_gap: Seconds no new call may start after this one (engine-wide), so that
                other clients' writes waiting on a single-writer database get their turn.
        """
        if quiet_gap > 0:
            self._quiet_until = max(self._quiet_until, self._clock() + quiet_gap)
        if outcome is Outcome.OK:
            self._pacer.set_rate(self._throttle.success())
        old = self._limit.limit
        new = self._limit.record(
            now=self._clock(),
            deleted=deleted,
            latency=latency,
            outcome=outcome,
            waiting=self.waiting,
        )
        if new != old:
            self._emit(ConcurrencyChanged(old=old, new=new, at=self._clock() - self._origin))
            self._dispatch()

    def push_back(
        self,
        *,
        job: str,
        retry_after: float | None,
        pause: float,
        sent_at: float | None = None,
    ) -> None:
        """The server said "slow down": pause everyone; halve the shared rate once an episode.

        Args:
            job: The job whose call was pushed back (for the event).
            retry_after: What the server asked for, if it did.
            pause: Seconds no call may start, engine-wide.
            sent_at: When the pushed-back call was sent (the engine's clock). A call sent
                before the last cut belongs to the episode that cut already answered; ``None``
                counts as a new episode.
        """
        now = self._clock()
        self._paused_until = max(self._paused_until, now + pause)
        rate = self._throttle.push_back(now=now, sent_at=sent_at)
        self._pacer.set_rate(rate)
        self._emit(
            Throttled(
                job=job, retry_after=retry_after, pause=pause, rate=rate, at=now - self._origin
            )
        )

    def _forget(self, job: object, waiter: _Waiter) -> None:
        waiters = self._queue.get(job)
        if waiters is None:
            return
        try:
            waiters.remove(waiter)
        except ValueError:
            pass
        else:
            self._waiting -= 1
        if not waiters:
            del self._queue[job]

    def _dispatch(self) -> None:
        while self._queue and self._in_flight < self.limit:
            job, waiters = next(iter(self._queue.items()))
            waiter = waiters.popleft()
            self._waiting -= 1
            if waiters:
                self._queue.move_to_end(job)  # round robin: this job goes to the back
            else:
                del self._queue[job]
            self._in_flight += 1
            waiter.granted = True
            waiter.event.set()

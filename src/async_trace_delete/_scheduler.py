"""The engine-wide gate every server call passes through.

Four things are shared by all jobs on one server, and enforced here:

* **fair slots** — at most ``limit`` calls in flight; when a slot frees it goes to the
  next *job* in round-robin order (not the next request), so a job with many ID chunks
  cannot starve a small job;
* **the concurrency limit** — ``limit`` comes from a :class:`~._controls.ConcurrencyLimit`
  fed each call's result (the adaptive :class:`~._concurrency.ConcurrencyController` settles
  at 1 on SQLite and opens up on a backend that scales; :class:`~._concurrency.FixedLimit`
  keeps it constant);
* **shared rates** — a :class:`~._pacing.Pacer` spaces call starts evenly (no bursts): deletes
  at ``rate_limit``, reads (searches, counts, lookups) at ``read_rate_limit``, artifact calls
  at ``artifact_rate_limit``;
* **reads fill the slots deletes leave** — a read takes a slot like a delete, but while no
  delete is in flight it may use up to ``read_slots`` (``max_concurrency``) rather than the
  limit learnt from deletes: that limit says how many *deletes* the database takes at once
  (1 on SQLite), not how many reads. A read never overlaps a delete beyond the learnt limit,
  so at ``max_concurrency=1`` nothing ever overlaps;
* **throttling for everyone** — a 429/503 (or a retry over the run's budget) pauses every
  job until the server's ``Retry-After`` (or the backoff) has passed, and a
  :class:`~._pacing.RateThrottle` halves the shared rate once per episode and lets it recover
  step by step on success; the pacer enforces the rate it decides.

Waits run on anyio (an :class:`anyio.Event` per waiting call), the pause and the quiet gap on
the engine's clock and sleep.
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

import anyio

from ._batching import Outcome
from ._controls import ConcurrencyLimit
from ._events import ConcurrencyChanged, Event, Throttled
from ._pacing import Pacer, RateThrottle

__all__ = ["CallKind", "Scheduler"]


class CallKind(enum.Enum):
    """What a server call is, for its slot and its rate."""

    DELETE = "delete"
    READ = "read"  # a search, a count, a lookup: deletes nothing
    FILES = "files"  # the artifact API


class _Waiter:
    """One call waiting for a slot; ``granted`` once :meth:`Scheduler._dispatch` gave it one."""

    __slots__ = ("event", "granted", "read")

    def __init__(self, *, read: bool) -> None:
        self.event = anyio.Event()
        self.granted = False
        self.read = read


class Scheduler:
    """Fair, rate-limited, concurrency-limited admission of server calls.

    Args:
        limit: Decides how many calls may be in flight.
        pacer: Spaces delete starts; its rate when the scheduler is built is the configured
            rate, which throttling cuts and restores.
        read_pacer: Spaces reads (their own rate, cut and restored in proportion);
            ``None``: ``pacer``.
        read_slots: Reads in flight at most while no delete is (at least the learnt limit).
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
        read_pacer: Pacer | None = None,
        read_slots: int = 1,
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
        self._read_pacer = read_pacer
        self._read_rate = read_pacer.rate if read_pacer is not None else pacer.rate
        self._read_slots = read_slots
        self._pacers = {  # built once: pace() is on every call's path
            CallKind.DELETE: pacer,
            CallKind.READ: read_pacer if read_pacer is not None else pacer,
            CallKind.FILES: file_pacer if file_pacer is not None else pacer,
        }
        self._file_slots = anyio.CapacityLimiter(file_slots)
        self._throttle = RateThrottle(pacer.rate)
        self._clock = clock
        self._sleep = sleep
        self._emit = emit
        self._in_flight = 0
        self._deletes_in_flight = 0
        self._queue: OrderedDict[object, deque[_Waiter]] = OrderedDict()
        self._waiting = 0  # waiters in the queue (kept, not summed: hundreds of jobs)
        self._paused_until = 0.0
        self._quiet_until = 0.0
        self._share = 1.0  # of the server, from the foreground canary
        self._gate = anyio.Event()  # set: calls may start (a throttle hook closes it)
        self._gate.set()

    @property
    def limit(self) -> int:
        """Calls allowed in flight now: the learnt limit, times the foreground share."""
        learnt = self._limit.limit
        if self._share >= 1.0:
            return learnt
        return max(1, int(learnt * self._share))

    @property
    def share(self) -> float:
        """The engine's share of the server (see :mod:`._foreground`), in (0, 1]."""
        return self._share

    def set_share(self, share: float) -> None:
        """Scale calls in flight (and, through their users, batches and gaps) by ``share``."""
        self._share = share
        self._dispatch()

    def set_gate(self, open_: bool) -> None:
        """Open or close the gate every call start waits for (the throttle hook's say)."""
        if open_:
            self._gate.set()
        elif self._gate.is_set():
            self._gate = anyio.Event()

    def quiet_gap(self, latency: float, coefficient: float, floor: float = 0.0) -> float:
        """Seconds no call may start after a delete of ``latency`` s: the configured gap
        (``coefficient`` x latency, at least ``floor``), or a duty cycle of the share,
        whichever is longer."""
        return max(floor, latency * max(coefficient, (1 - self._share) / self._share))

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

    async def acquire(self, job: object, *, read: bool = False) -> None:
        """Wait for an in-flight slot for ``job`` (granted round-robin across jobs).

        Cancelling the wait gives nothing up: a waiter cancelled before its turn leaves the
        queue, one cancelled just after it was granted a slot hands the slot on. Give the
        slot back with :meth:`release` (with the same ``read``).

        Args:
            job: Whose turn it is.
            read: The call deletes nothing: while no delete is in flight it may use up to
                ``read_slots`` slots rather than the learnt limit.
        """
        if self._fits(read=read) and not self._queue:
            self._take(read=read)
            return
        waiter = _Waiter(read=read)
        self._queue.setdefault(job, deque()).append(waiter)
        self._waiting += 1
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                self.release(read=read)  # granted just as we were cancelled: hand it on
            else:
                self._forget(job, waiter)
            raise

    def release(self, *, read: bool = False) -> None:
        """Give back a slot taken with :meth:`acquire`."""
        self._in_flight -= 1
        if not read:
            self._deletes_in_flight -= 1
        self._dispatch()

    def _fits(self, *, read: bool) -> bool:
        """Whether a call of this kind may start now."""
        if read and self._deletes_in_flight == 0:
            return self._in_flight < max(self.limit, self._read_slots)
        return self._in_flight < self.limit

    def _take(self, *, read: bool) -> None:
        self._in_flight += 1
        if not read:
            self._deletes_in_flight += 1

    async def acquire_file_slot(self) -> None:
        """Wait for one of the artifact API's slots; give it back with
        :meth:`release_file_slot`."""
        await self._file_slots.acquire()

    def release_file_slot(self) -> None:
        """Give back a slot taken with :meth:`acquire_file_slot`."""
        self._file_slots.release()

    async def pace(self, kind: CallKind = CallKind.DELETE) -> None:
        """Wait out any shared pause and the quiet gap, then the rate of the call's kind.

        An artifact API call (``FILES``) waits out the shared pause (a server that pushed
        back pushed back on everyone), not the quiet gap (that is other clients' turn at the
        database, which removing a folder does not take), then the artifact API's own rate.
        A pause or a quiet gap that begins while the pacer makes the call wait holds it too.
        """
        files = kind is CallKind.FILES
        pacer = self._pacers[kind]

        def held_until() -> float:
            return self._paused_until if files else max(self._paused_until, self._quiet_until)

        while True:
            if not self._gate.is_set():
                await self._gate.wait()
                continue
            now = self._clock()
            hold_until = held_until()
            if hold_until > now:
                await self._sleep(hold_until - now)
                continue
            await pacer.wait()
            if held_until() <= self._clock() and self._gate.is_set():
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
            self._set_rate(self._throttle.success())
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
        self._set_rate(rate)
        self._emit(
            Throttled(
                job=job, retry_after=retry_after, pause=pause, rate=rate, at=now - self._origin
            )
        )

    def _set_rate(self, rate: float) -> None:
        """The delete rate in force; reads are cut and restored in the same proportion."""
        share = rate / self._throttle.configured
        self._pacer.set_rate(rate)
        if self._read_pacer is not None:
            self._read_pacer.set_rate(self._read_rate * share)

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
        """Grant free slots round robin: the first job, in turn, whose next call fits."""
        while self._queue and self._in_flight < max(self.limit, self._read_slots):
            job = self._next_fitting()
            if job is None:
                return
            waiters = self._queue[job]
            waiter = waiters.popleft()
            self._waiting -= 1
            if waiters:
                self._queue.move_to_end(job)  # round robin: this job goes to the back
            else:
                del self._queue[job]
            self._take(read=waiter.read)
            waiter.granted = True
            waiter.event.set()

    def _next_fitting(self) -> object | None:
        """The first job in turn whose next call may start now (a read may fit where a
        delete does not: past the learnt limit while no delete is in flight)."""
        for job, waiters in self._queue.items():
            if self._fits(read=waiters[0].read):
                return job
            if self._in_flight >= self.limit and self._deletes_in_flight > 0:
                return None  # nothing fits: a read would need the learnt limit too
        return None

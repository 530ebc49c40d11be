"""The probe counts ticks it could not send as stalls in its percentiles, not as errors."""

from __future__ import annotations

from benchmarks.probe import ProbeSample, StallBook, summarize


def test_stalled_ticks_count_in_the_percentiles_with_their_wait() -> None:
    """99 fast answers and 2 ticks not sent for 3 s: the p99 is the stall, not a fast answer."""
    samples = [ProbeSample("read", index * 0.05, 0.010) for index in range(99)]
    book = StallBook()
    book.skip("read", 1.0)
    book.skip("write", 1.05)
    samples += book.slot_freed(4.0)
    summary = summarize(samples)
    assert (summary.count, summary.sent, summary.stalled, summary.errors) == (101, 99, 2, 0)
    assert summary.p99 is not None
    assert abs(summary.p99 - 2.95) < 1e-9
    assert summary.max is not None
    assert abs(summary.max - 3.0) < 1e-9


def test_errors_count_only_failed_answers() -> None:
    """A 503 is an error; a stall is not."""
    samples = [
        ProbeSample("write", 0.0, 0.2, error="HTTP 503: locked"),
        ProbeSample("write", 0.1, 0.5, stalled=True),
    ]
    summary = summarize(samples)
    assert (summary.errors, summary.stalled, summary.sent) == (1, 1, 1)


def test_a_freed_slot_settles_every_pending_tick_once() -> None:
    """Each pending tick is settled by the first completion after it, and only once."""
    book = StallBook()
    book.skip("read", 0.0)
    assert [s.latency for s in book.slot_freed(0.3)] == [0.3]
    assert book.slot_freed(0.5) == []

from __future__ import annotations

from storage.ratelimit import RateSpec, gcra_step


def run(spec: RateSpec, times_ms: list[int]) -> list[bool]:
    tat, verdicts = None, []
    for now in times_ms:
        decision, tat = gcra_step(now, tat, spec)
        verdicts.append(decision.allowed)
    return verdicts


def test_a_burst_is_admitted_then_one_request_per_period() -> None:
    spec = RateSpec(period_ms=100, burst=5)
    assert run(spec, [0] * 6) == [True] * 5 + [False]
    assert run(spec, [0] * 5 + [100]) == [True] * 6


def test_remaining_counts_down_and_retry_after_is_the_wait() -> None:
    spec, tat = RateSpec(period_ms=1000, burst=3), None
    seen = []
    for _ in range(4):
        decision, tat = gcra_step(10_000, tat, spec)
        seen.append((decision.allowed, decision.remaining))
    assert seen == [(True, 2), (True, 1), (True, 0), (False, 0)]
    assert decision.retry_after_ms == 1000
    assert decision.retry_after_s == 1
    assert decision.reset_s == 3


def test_refused_requests_do_not_consume_the_bucket() -> None:
    spec = RateSpec(period_ms=100, burst=2)
    assert run(spec, [0, 0, 0, 0, 0, 100]) == [True, True, False, False, False, True]


def test_per_second_converts_a_rate() -> None:
    assert RateSpec.per_second(50, 100) == RateSpec(20, 100)
    assert RateSpec.per_second(0.5, 3) == RateSpec(2000, 3)

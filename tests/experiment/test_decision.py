"""The decision rule, one branch at a time, and the verdicts it is built from."""

from __future__ import annotations

import math

import pytest

from recsys.experiment.decision import decide, guardrail_verdict, success_verdict
from recsys.experiment.stats import Comparison, Moments, compare


def summary(n: int, mean: float, var: float) -> Moments:
    """Moments of an arm given its size, mean and sample variance (no covariate)."""
    return Moments(n=n, sum_y=n * mean, sum_y2=(n - 1) * var + n * mean**2)


# --- verdicts


def test_success_verdict():
    better = compare(summary(10_000, 1.1, 1.0), summary(10_000, 1.0, 1.0))
    worse = compare(summary(10_000, 0.9, 1.0), summary(10_000, 1.0, 1.0))
    assert success_verdict(better, 0.01) == "better"
    assert success_verdict(worse, 0.01) == "worse"
    assert success_verdict(better, 0.2) == "inconclusive"
    assert success_verdict(better, math.nan) == "inconclusive"


def test_guardrail_verdict_is_non_inferiority_against_the_margin():
    def churn(lift: float, se: float = 0.001) -> Comparison:
        return compare(
            summary(10_000, 0.05 + lift, 1e4 * se**2 / 2), summary(10_000, 0.05, 1e4 * se**2 / 2)
        )

    margin = 0.005
    assert guardrail_verdict(churn(0.001), margin) == "non_inferior"  # 0.001 + 1.96se < margin
    assert guardrail_verdict(churn(0.010), margin) == "worse"  # 0.010 - 1.96se > margin
    assert guardrail_verdict(churn(0.005), margin) == "inconclusive"
    # Lower is worse (e.g. retention): the mirror image.
    assert guardrail_verdict(churn(-0.001), margin, higher_is_worse=False) == "non_inferior"
    assert guardrail_verdict(churn(-0.010), margin, higher_is_worse=False) == "worse"
    assert guardrail_verdict(churn(0.010), margin, higher_is_worse=False) == "non_inferior"
    nan_interval = compare(summary(1, 0.05, 0.0), summary(1, 0.05, 0.0))
    assert guardrail_verdict(nan_interval, margin) == "inconclusive"


# --- 8. The decision rule, one branch at a time

BETTER = compare(summary(40_000, 0.055, 0.052), summary(40_000, 0.05, 0.0475))
FLAT = compare(summary(40_000, 0.0501, 0.0476), summary(40_000, 0.05, 0.0475))
WORSE = compare(summary(40_000, 0.045, 0.043), summary(40_000, 0.05, 0.0475))


def run(**overrides):
    settings = {
        "srm_p": 0.4,
        "srm_alpha": 0.001,
        "success": BETTER,
        "success_verdict": "better",
        "guardrails": {"cancellation_rate": "non_inferior", "refund_rate": "non_inferior"},
        "required_users_per_arm": 31_232,
        "users_per_arm": 40_000,
    } | overrides
    return decide(**settings)


def test_decide_invalid_on_sample_ratio_mismatch_before_anything_else():
    outcome = run(srm_p=0.00012)
    assert outcome.decision == "invalid"
    assert "0.00012" in outcome.reason and "assignment" in outcome.reason


def test_decide_keep_baseline_when_success_is_worse():
    outcome = run(success=WORSE, success_verdict="worse")
    assert outcome.decision == "keep_baseline"
    assert f"{WORSE.rel_lift:+.1%}" in outcome.reason  # -10.0%


def test_decide_keep_baseline_when_a_guardrail_is_worse():
    outcome = run(guardrails={"cancellation_rate": "worse", "refund_rate": "non_inferior"})
    assert outcome.decision == "keep_baseline"
    assert "'cancellation_rate'" in outcome.reason and "refund_rate" not in outcome.reason


def test_decide_ship():
    outcome = run()
    assert outcome.decision == "ship"
    assert f"{BETTER.rel_lift:+.1%}" in outcome.reason  # +10.0%
    assert f"{BETTER.rel_low:+.1%}" in outcome.reason


def test_decide_keep_testing_while_a_guardrail_is_inconclusive():
    outcome = run(guardrails={"cancellation_rate": "non_inferior", "refund_rate": "inconclusive"})
    assert outcome.decision == "keep_testing"
    assert "'refund_rate'" in outcome.reason and "cancellation_rate" not in outcome.reason


def test_decide_keep_testing_while_underpowered():
    outcome = run(success=FLAT, success_verdict="inconclusive", users_per_arm=12_000)
    assert outcome.decision == "keep_testing"
    assert "31,232" in outcome.reason and "12,000" in outcome.reason
    assert outcome.required_users_per_arm == 31_232


@pytest.mark.parametrize("required", [31_232, None])
def test_decide_keep_baseline_when_powered_and_flat(required):
    outcome = run(success=FLAT, success_verdict="inconclusive", required_users_per_arm=required)
    assert outcome.decision == "keep_baseline"
    assert "40,000" in outcome.reason
    assert outcome.required_users_per_arm == required

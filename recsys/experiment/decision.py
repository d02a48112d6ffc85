"""The rule that turns an experiment's comparisons into a decision a product manager can act on.

The decision rule, applied in this order:

1. Sample ratio mismatch (SRM p < srm_alpha): ``invalid``. The split is broken; fix
   assignment before reading any result.
2. The success metric is significantly worse, or any guardrail is worse by more than its
   margin: ``keep_baseline``.
3. The success metric is significantly better and every guardrail is non-inferior: ``ship``.
4. The success metric is significantly better but some guardrail is inconclusive:
   ``keep_testing`` (the reason names those guardrails).
5. The success metric is inconclusive: ``keep_testing`` while the arms hold fewer users than
   the sample size that detects the minimum effect; otherwise ``keep_baseline``, since the
   test had the power to see that effect and did not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from recsys.experiment.stats import Comparison

Verdict = Literal["better", "worse", "inconclusive"]
GuardVerdict = Literal["non_inferior", "worse", "inconclusive"]
Decision = Literal["ship", "keep_baseline", "keep_testing", "invalid"]


def success_verdict(c: Comparison, p_adjusted: float, *, alpha: float = 0.05) -> Verdict:
    """Better or worse when the (multiplicity-adjusted) p-value is below alpha."""
    if p_adjusted < alpha and c.lift > 0:
        return "better"
    if p_adjusted < alpha and c.lift < 0:
        return "worse"
    return "inconclusive"


def guardrail_verdict(
    c: Comparison, margin: float, *, higher_is_worse: bool = True
) -> GuardVerdict:
    """Non-inferiority of a guardrail with an absolute ``margin`` of tolerated harm.

    For a metric where higher is worse (e.g. cancellation rate): non-inferior when the whole
    interval of the lift lies below ``margin``, worse when it lies above it (harm beyond the
    tolerance is certain), inconclusive otherwise. Mirrored, with ``-margin``, for a metric
    where lower is worse. A nan interval is inconclusive.
    """
    if not margin >= 0:
        raise ValueError(f"margin must be non-negative, got {margin}")
    if higher_is_worse:
        if c.lift_low > margin:
            return "worse"
        if c.lift_high < margin:
            return "non_inferior"
    else:
        if c.lift_high < -margin:
            return "worse"
        if c.lift_low > -margin:
            return "non_inferior"
    return "inconclusive"


@dataclass(frozen=True)
class Outcome:
    """What to do with the experiment, and why in one sentence with the figures behind it."""

    decision: Decision
    reason: str
    required_users_per_arm: int | None


def decide(
    *,
    srm_p: float,
    srm_alpha: float,
    success: Comparison,
    success_verdict: Verdict,
    guardrails: Mapping[str, GuardVerdict],
    required_users_per_arm: int | None,
    users_per_arm: int,
) -> Outcome:
    """Apply the decision rule of the module docstring."""
    needed = required_users_per_arm
    effect = _describe_effect(success)

    def outcome(decision: Decision, reason: str) -> Outcome:
        return Outcome(decision, reason, needed)

    if srm_p < srm_alpha:
        return outcome(
            "invalid",
            f"The users are not split between arms as configured (sample ratio mismatch, "
            f"p = {srm_p:.2g} < {srm_alpha:g}); fix assignment before reading the results.",
        )
    worse = sorted(name for name, verdict in guardrails.items() if verdict == "worse")
    if success_verdict == "worse":
        return outcome(
            "keep_baseline",
            f"The success metric is significantly worse ({effect}, p = {success.p_value:.2g}); "
            f"keep the baseline.",
        )
    if worse:
        return outcome(
            "keep_baseline",
            f"Guardrail {_names(worse)} got worse by more than the tolerated margin "
            f"(success metric {effect}); keep the baseline.",
        )
    if success_verdict == "better":
        unsure = sorted(n for n, verdict in guardrails.items() if verdict != "non_inferior")
        if not unsure:
            return outcome(
                "ship",
                f"The success metric is significantly better ({effect}, "
                f"p = {success.p_value:.2g}) and every guardrail is within its margin; ship.",
            )
        return outcome(
            "keep_testing",
            f"The success metric is significantly better ({effect}) but guardrail "
            f"{_names(unsure)} cannot yet be shown to stay within its margin; keep testing.",
        )
    if needed is not None and users_per_arm < needed:
        return outcome(
            "keep_testing",
            f"No significant change in the success metric yet ({effect}) with "
            f"{users_per_arm:,} users per arm; {needed:,} per arm are needed to detect the "
            f"minimum effect, so keep testing.",
        )
    power_note = (
        f"{users_per_arm:,} users per arm, enough to detect the minimum effect ({needed:,} needed)"
        if needed is not None
        else f"{users_per_arm:,} users per arm and no sample size target"
    )
    return outcome(
        "keep_baseline",
        f"No significant change in the success metric ({effect}) with {power_note}; "
        f"keep the baseline.",
    )


def _describe_effect(c: Comparison) -> str:
    """'+2.1% (interval +0.8% to +3.4%)', or the absolute lift when no relative one exists."""
    if math.isfinite(c.rel_lift):
        value, low, high, spec = c.rel_lift, c.rel_low, c.rel_high, "+.1%"
    else:
        value, low, high, spec = c.lift, c.lift_low, c.lift_high, "+.3g"
    text = f"{value:{spec}}"
    if math.isfinite(low) and math.isfinite(high):
        text += f" (interval {low:{spec}} to {high:{spec}})"
    return text


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)

"""Choosing the candidate: the family that goes to the gate, chosen on validation.

The best family on validation by the gate's metric goes forward unless a simpler family ties
with it within the paired bootstrap interval of its lead, or ``train.candidate`` names one;
the reason is returned in words for the log, the report and the parent run's tags.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recsys.config import TrainConfig
from recsys.training import gate

if TYPE_CHECKING:
    from recsys.training.trainer import FamilyResult


def choose_candidate(
    results: dict[str, FamilyResult], families: list[str], settings: TrainConfig
) -> tuple[FamilyResult, str]:
    """The family that goes to the gate, and why, in words.

    ``train.candidate`` when it names a family. Otherwise the family best on validation by
    the gate's metric, unless a simpler family ties with it: the paired bootstrap interval
    of its lead over that family, on the same validation users, does not exclude zero. A
    lead the interval cannot tell from noise does not buy a more complex model, so the
    simplest tying family goes forward. Families are simplest first in
    :data:`~recsys.models.FAMILIES` order (popularity, ladder, the factor families,
    conversion).
    """
    column = settings.gate.column
    if settings.candidate != "auto":
        named = results[settings.candidate]
        return named, (
            f"named by train.candidate; validation {column} {named.chosen.pooled(column):.4f}"
        )
    best = max(results.values(), key=lambda r: (r.chosen.pooled(column), -families.index(r.family)))
    because = f"best on validation, {column} {best.chosen.pooled(column):.4f}"
    if best.chosen.per_user(column) is None:
        return best, because + " (carried over from a resumed run: no interval to compare)"
    simpler = {
        other.family: other.chosen.per_user(column)
        for other in (results[f] for f in families[: families.index(best.family)])
        if other.chosen.per_user(column) is not None
    }
    if not simpler:
        return best, because
    table = gate.compare(best.chosen.per_user(column), simpler, settings.gate, seed=settings.seed)
    leads = []
    for lead in gate.pooled(table):  # simplest first
        if lead.low <= 0:
            return results[lead.opponent], (
                f"ties on validation with {best.family}, the best there, and is simpler: "
                f"{best.family} {lead.describe(column)}, an interval that does not exclude zero"
            )
        leads.append(lead.describe(column))
    return best, because + "; " + "; ".join(leads)

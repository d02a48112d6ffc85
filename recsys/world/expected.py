"""Exact expected values of a served list under the simulator's cascade, and the oracle's list.

A user who opens the surface looks at rank r with probability ``position_bias[r]`` and takes
a looked-at offer with its true probability; the first offer taken in rank order wins. Under
that model the chance a list converts, and what its first charge is worth, are sums over the
ranks, computed here with Spark's higher-order functions (no UDF). The oracle's list is the
user's top-k by true probability (or probability x charge), the best any policy could show.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def look_chance(position_bias: list[float], rank: Column) -> Column:
    """Chance that a user on the surface looks at ``rank``.

    Parameters
    ----------
    position_bias : list of float
        The chance of looking at ranks 1, 2, ...; ranks past its end take its last value.
    rank : Column
        An int column, 1 = first.

    Returns
    -------
    Column
        A double in [0, 1].
    """
    curve = F.array(*[F.lit(b) for b in position_bias])
    return F.element_at(curve, F.least(rank, F.lit(len(position_bias))))


def expected_conversion(slots: Column, reach: float, organic: Column) -> Column:
    """P(convert) of a list: ``slots`` is array<struct<rank, offer_id, p, bias>> by rank;
    ``organic`` the user's chance of converting on the plan page if the list did not work."""
    surface = _surface_share(slots)
    taken = F.lit(reach) * surface["total"]
    return taken + (1 - taken) * organic


def expected_charge(slots: Column, reach: float, organic_charge: Column, charge: Column) -> Column:
    """E[first charge] of a list; ``charge`` maps offer_id -> first charge for the user's
    market, ``organic_charge`` is E[charge] of the plan-page visit."""
    surface = _surface_share(slots, charge)
    return F.lit(reach) * surface["value"] + (1 - F.lit(reach) * surface["total"]) * organic_charge


def _surface_share(slots: Column, charge: Column | None = None) -> Column:
    """struct(total, value): P(the list converts a user who opened the surface), and E[charge]
    of it, by the cascade: rank r converts if looked at and taken, and no earlier rank did."""
    start = F.struct(
        F.lit(1.0).alias("alive"), F.lit(0.0).alias("total"), F.lit(0.0).alias("value")
    )

    def step(acc: Column, slot: Column) -> Column:
        here = acc["alive"] * slot["bias"] * slot["p"]
        worth = F.lit(0.0) if charge is None else F.coalesce(charge[slot["offer_id"]], F.lit(0.0))
        return F.struct(
            (acc["alive"] * (1 - slot["bias"] * slot["p"])).alias("alive"),
            (acc["total"] + here).alias("total"),
            (acc["value"] + here * worth).alias("value"),
        )

    return F.aggregate(slots, start, step)


def oracle_slots(
    p_accept: Column, key: Column | None, k: int, position_bias: list[float]
) -> Column:
    """The oracle's top-k: the offers open to the user by true p (or p x charge), best first.

    By p it is the list that converts most under the cascade of :func:`expected_conversion`.
    By p x charge it is a strong list for revenue, not always the best: a dearer, less likely
    offer first can earn more, since a user who takes an offer looks no further.

    Parameters
    ----------
    p_accept : Column
        map<offer_id, double>: the user's true probability of taking each offer (0: not open).
    key : Column or None
        map<offer_id, double> the probabilities are multiplied by before ordering (the first
        charge, for the revenue oracle); None orders by probability alone.
    k : int
        List length.
    position_bias : list of float
        As in :func:`look_chance`.

    Returns
    -------
    Column
        array<struct<rank, offer_id, p, bias>> by rank, the shape
        :func:`expected_conversion` and :func:`expected_charge` read.
    """
    open_offers = F.filter(F.map_entries(p_accept), lambda e: e["value"] > 0)
    keyed = F.transform(
        open_offers,
        lambda e: F.struct(
            (-(e["value"] * (F.lit(1.0) if key is None else key[e["key"]]))).alias("order"),
            e["key"].alias("offer_id"),
            e["value"].alias("p"),
        ),
    )
    best = F.slice(F.array_sort(keyed), 1, k)
    return F.transform(
        best,
        lambda e, i: F.struct(
            (i + 1).cast("int").alias("rank"),
            e["offer_id"].alias("offer_id"),
            e["p"].alias("p"),
            look_chance(position_bias, i + 1).alias("bias"),
        ),
    )

"""What one market's users are served, and why: the published lists
(``plan_recommendations_current``) and the eligibility verdicts behind them
(``eligibility_audit``).

The readers filter to one market; the transformations aggregate in Spark, so what reaches
the driver is a few rows per offer, rank, arm or reason, whatever the number of users.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.config import Config
from recsys.errors import RecsysError
from recsys.tables import read_table
from recsys.vocabulary import (
    ALL,
    ARMS,
    EXPLORATION_REASON,
    FALLBACK_REASON,
    HOLDOUT_ARM,
    HOLDOUT_REASON,
    NO_ELIGIBLE_OFFER,
)

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
ELIGIBLE = "eligible"


def served_lists(spark: SparkSession, config: Config, market: str) -> DataFrame:
    """The served rows of ``market`` (``plan_recommendations_current``; its contract)."""
    known = sorted(config.markets.markets)
    if market not in known:
        raise RecsysError(f"unknown market {market!r}; the catalogue has {known}")
    return read_table(spark, config, S.PLAN_RECOMMENDATIONS_CURRENT).where(
        F.col("market") == F.lit(market)
    )


def market_users(spark: SparkSession, config: Config, market: str) -> DataFrame:
    """The ``users`` of ``market``: who should have a row in the served lists."""
    return read_table(spark, config, S.USERS).where(F.col("market") == F.lit(market))


def audit(spark: SparkSession, config: Config, market: str, snapshot: object) -> DataFrame:
    """The eligibility verdicts of ``market`` in the `recommend` run of ``snapshot``."""
    return read_table(spark, config, S.ELIGIBILITY_AUDIT).where(
        (F.col("market") == F.lit(market)) & (F.col("snapshot_date") == F.lit(snapshot))
    )


EXAMPLE_COLUMNS = (
    "user_id",
    "arm",
    "rank",
    "offer_id",
    "display_name",
    "price_display",
    "p_convert",
    "expected_value",
    "reason_code",
)


def examples(lists_df: DataFrame, users_per_arm: int = 2) -> DataFrame:
    """Whole lists to read: the rows of the first ``users_per_arm`` users (by user_id) of each
    arm that were served something (the holdout's rank-0 row included)."""
    first = Window.partitionBy("arm").orderBy("user_id")
    chosen_df = (
        lists_df.select("arm", "user_id")
        .distinct()
        .withColumn("n", F.row_number().over(first))
        .where(F.col("n") <= users_per_arm)
    )
    return (
        lists_df.join(chosen_df, on=["arm", "user_id"], how="left_semi")
        .select(*EXAMPLE_COLUMNS)
        .orderBy("arm", "user_id", "rank")
    )


def plan_mix(lists_df: DataFrame) -> DataFrame:
    """(arm, rank, offer_id, users, share): how often each offer holds each rank, as a share
    of the arm's users listed at that rank. ``lists_df``: served rows (user x rank)."""
    by_rank = Window.partitionBy("arm", "rank")
    return (
        lists_df.where(F.col("rank") > 0)
        .groupBy("arm", "rank", "offer_id")
        .agg(F.count(F.lit(1)).alias("users"))
        .withColumn("share", F.col("users") / F.sum("users").over(by_rank))
        .select("arm", "rank", "offer_id", "users", "share")
        .orderBy("arm", "rank", F.desc("users"), "offer_id")
    )


def reason_mix(lists_df: DataFrame) -> DataFrame:
    """(arm, reason_code, rows, share): the reasons on the arm's rows, rank-0 rows (holdout,
    nothing eligible) included, as a share of the arm's rows."""
    by_arm = Window.partitionBy("arm")
    return (
        lists_df.groupBy("arm", "reason_code")
        .agg(F.count(F.lit(1)).alias("rows"))
        .withColumn("share", F.col("rows") / F.sum("rows").over(by_arm))
        .select("arm", "reason_code", "rows", "share")
        .orderBy("arm", F.desc("rows"), "reason_code")
    )


def coverage(lists_df: DataFrame, users_df: DataFrame) -> DataFrame:
    """Per arm and for all arms (``all``): users served, users given a list (rank 1 and on),
    told no offer because of the holdout or because nothing was eligible, and users with
    at least one fallback or exploration row. ``not_served``: users of ``users_df`` (the
    market's users) with no row at all, which publishing's validation rules out."""
    reason = F.col("reason_code")
    per_user_df = lists_df.groupBy("user_id", "arm").agg(
        F.max(F.col("rank") > 0).alias("has_list"),
        F.max(reason == HOLDOUT_REASON).alias("is_holdout"),
        F.max(reason == NO_ELIGIBLE_OFFER).alias("has_no_eligible_offer"),
        F.max(reason == FALLBACK_REASON).alias("has_fallback"),
        F.max(reason == EXPLORATION_REASON).alias("is_exploring"),
    )
    sums = [
        F.count(F.lit(1)).alias("users"),
        *(
            F.sum(F.col(flag).cast("long")).alias(name)
            for flag, name in (
                ("has_list", "with_list"),
                ("is_holdout", "holdout"),
                ("has_no_eligible_offer", "no_eligible_offer"),
                ("has_fallback", "fallback"),
                ("is_exploring", "exploring"),
            )
        ),
    ]
    unserved_df = users_df.select("user_id").join(
        per_user_df.select("user_id"), on="user_id", how="left_anti"
    )
    total_df = (
        per_user_df.agg(*sums)
        .withColumn("arm", F.lit(ALL))
        .crossJoin(unserved_df.agg(F.count(F.lit(1)).alias("not_served")))
    )
    return (
        per_user_df.groupBy("arm")
        .agg(*sums)
        .withColumn("not_served", F.lit(None).cast("long"))
        .unionByName(total_df)
        .withColumn("share_with_list", F.col("with_list") / F.col("users"))
        .withColumn("share_fallback", F.col("fallback") / F.col("users"))
        .select(
            "arm",
            "users",
            "with_list",
            "share_with_list",
            "holdout",
            "no_eligible_offer",
            "fallback",
            "share_fallback",
            "exploring",
            "not_served",
        )
    )


def audit_reasons(audit_df: DataFrame) -> DataFrame:
    """(offer_id, verdict, users, share): per offer, how many users were eligible (verdict
    ``eligible``) or excluded for each reason, as a share of the offer's audited users."""
    verdict = F.when(F.col("eligible"), F.lit(ELIGIBLE)).otherwise(
        F.coalesce(F.col("reason_code"), F.lit("unknown"))
    )
    by_offer = Window.partitionBy("offer_id")
    return (
        audit_df.groupBy("offer_id", verdict.alias("verdict"))
        .agg(F.count(F.lit(1)).alias("users"))
        .withColumn("share", F.col("users") / F.sum("users").over(by_offer))
        .select("offer_id", "verdict", "users", "share")
        .orderBy("offer_id", F.desc("users"), "verdict")
    )


def value_quantiles(lists_df: DataFrame, quantiles: Sequence[float] = QUANTILES) -> DataFrame:
    """Per listed offer: its price, how often it is listed, and quantiles of ``p_convert``
    and ``expected_value`` over the rows listing it (columns ``p_convert_q50`` etc.)."""
    levels = F.array(*(F.lit(q) for q in quantiles))
    stats_df = (
        lists_df.where(F.col("rank") > 0)
        .groupBy("offer_id")
        .agg(
            F.first("display_name").alias("display_name"),
            F.first("price_display").alias("price_display"),
            F.first(F.col("price_amount").cast("double")).alias("price_amount"),
            F.first("currency").alias("currency"),
            F.count(F.lit(1)).alias("rows"),
            F.percentile_approx("p_convert", levels).alias("p_convert"),
            F.percentile_approx("expected_value", levels).alias("expected_value"),
        )
    )
    columns = [
        F.col(name)[i].alias(f"{name}_q{round(100 * q):02d}")
        for name in ("p_convert", "expected_value")
        for i, q in enumerate(quantiles)
    ]
    return stats_df.select(
        "offer_id", "display_name", "price_display", "price_amount", "currency", "rows", *columns
    ).orderBy(F.desc("rows"), "offer_id")


def snapshot_of(lists_df: DataFrame) -> object:
    """The snapshot date of the served rows (one per view)."""
    row = lists_df.select("snapshot_date").first()
    if row is None:
        raise RecsysError("no served rows for this market: run recommend")
    return row["snapshot_date"]


# -- charts ------------------------------------------------------------------------------
def _arms_in(frame: pd.DataFrame) -> list[str]:
    return [a for a in ARMS if a in set(frame["arm"])]


def _offer_colours(offers: Sequence[str]) -> dict[str, object]:
    # One colour per offer, the same in every panel (tab20: room for a whole catalogue).
    palette = colormaps["tab20"]
    return {offer: palette(i % palette.N) for i, offer in enumerate(sorted(offers))}


def plot_plan_mix(mix: pd.DataFrame, market: str) -> Figure:
    """One panel per arm: for each rank, the share of each offer (stacked to 100%)."""
    arms = _arms_in(mix)
    colours = _offer_colours(mix["offer_id"].unique())
    figure = Figure(figsize=(5 * max(len(arms), 1) + 3, 4.5), layout="constrained")
    panels = figure.subplots(1, max(len(arms), 1), squeeze=False, sharey=True)[0]
    for axes, arm in zip(panels, arms, strict=False):
        table = (
            mix[mix["arm"] == arm]
            .pivot(index="rank", columns="offer_id", values="share")
            .fillna(0.0)
            .sort_index()
        )
        bottom = pd.Series(0.0, index=table.index)
        for offer in table.columns:
            axes.bar(
                table.index,
                100 * table[offer],
                bottom=100 * bottom,
                color=colours[offer],
                label=offer,
            )
            bottom += table[offer]
        axes.set_xticks(list(table.index), [f"rank {r}" for r in table.index])
        axes.set_title(f"{market}, {arm} arm")
    panels[0].set_ylabel("share of the arm's users at that rank, %")
    handles: dict[str, object] = {}
    for axes in panels:
        for handle, label in zip(*axes.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    figure.legend(handles.values(), handles.keys(), loc="outside right upper", fontsize="small")
    return figure


def plot_reasons(reasons: pd.DataFrame, market: str) -> Figure:
    """The share of each reason code on the rows of the arms that are shown lists (the
    holdout's rows all say ``holdout``), as horizontal bars per arm."""
    arms = [a for a in _arms_in(reasons) if a != HOLDOUT_ARM]
    shown = reasons[reasons["arm"].isin(arms)]
    table = (
        shown.pivot(index="reason_code", columns="arm", values="share")
        .reindex(columns=arms)
        .fillna(0.0)
    )
    table = table.loc[table.max(axis=1).sort_values().index]
    figure = Figure(figsize=(9, 1.5 + 0.4 * len(table)), layout="constrained")
    axes = figure.subplots()
    height = 0.8 / max(len(arms), 1)
    for i, arm in enumerate(arms):
        axes.barh(
            [y + (i - (len(arms) - 1) / 2) * height for y in range(len(table))],
            100 * table[arm],
            height=height,
            label=arm,
        )
    axes.set_yticks(range(len(table)), table.index)
    axes.set_xlabel("share of the arm's rows, %")
    axes.set_title(f"{market}: why each row is there (reason_code)")
    axes.legend(loc="lower right")
    return figure


_EXCLUSION_COLOURS = (
    "tab:grey",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:orange",
    "tab:olive",
    "tab:cyan",
    "tab:blue",
)


def plot_audit(reasons: pd.DataFrame, market: str) -> Figure:
    """Per offer, the users eligible for it and those excluded, by reason (stacked bars)."""
    table = reasons.pivot(index="offer_id", columns="verdict", values="users").fillna(0)
    verdicts = [ELIGIBLE] if ELIGIBLE in table else []
    verdicts += sorted(v for v in table.columns if v != ELIGIBLE)
    table = table[verdicts].sort_index(ascending=False)
    figure = Figure(figsize=(10, 1.5 + 0.4 * len(table)), layout="constrained")
    axes = figure.subplots()
    if table.empty:
        # recommend.audit_share 0, or a rolled-back snapshot whose audit was replaced since.
        axes.set_axis_off()
        axes.text(
            0.5,
            0.5,
            f"{market}: no eligibility verdicts audited for this snapshot",
            ha="center",
            va="center",
        )
        return figure
    left = pd.Series(0.0, index=table.index)
    excluded = iter(_EXCLUSION_COLOURS * len(verdicts))
    for verdict in verdicts:
        colour = "tab:green" if verdict == ELIGIBLE else next(excluded)
        axes.barh(table.index, table[verdict], left=left, label=verdict, color=colour)
        left += table[verdict]
    axes.set_xlabel("users audited")
    axes.set_title(f"{market}: eligibility verdicts per offer (excluded: reason)")
    figure.legend(loc="outside right upper", fontsize="small")
    return figure


def plot_values(quantiles: pd.DataFrame, market: str) -> Figure:
    """Per listed offer: box plots of ``p_convert`` and ``expected_value`` over the rows that
    list it (box: quartiles; whiskers: 5th and 95th percentiles; line: median)."""
    figure = Figure(figsize=(13, 1.5 + 0.55 * len(quantiles)), layout="constrained")
    panels = figure.subplots(1, 2, sharey=True)
    # Prices as amount and ISO code: the locale's symbols (e.g. the fullwidth yen sign of
    # ja_JP) are not in matplotlib's default font.
    labels = [
        f"{r.offer_id} ({_price(r.price_amount, r.currency)}{r.rows:,} rows)"
        for r in quantiles.itertuples()
    ]
    positions = list(range(1, len(quantiles) + 1))
    for axes, name, unit in (
        (panels[0], "p_convert", "probability of converting"),
        (panels[1], "expected_value", _expected_value_unit(quantiles)),
    ):
        boxes = [
            {
                "whislo": row[f"{name}_q05"],
                "q1": row[f"{name}_q25"],
                "med": row[f"{name}_q50"],
                "q3": row[f"{name}_q75"],
                "whishi": row[f"{name}_q95"],
            }
            for _, row in quantiles.iterrows()
        ]
        axes.bxp(
            boxes,
            positions=positions,
            orientation="horizontal",
            showfliers=False,
            manage_ticks=False,
        )
        axes.set_xlabel(unit)
        axes.set_title(f"{market}: {name} of the listed rows")
    panels[0].set_yticks(positions, labels)
    panels[0].set_ylim(0.5, len(positions) + 0.5)
    return figure


def _price(amount: float | None, currency: str) -> str:
    """``9.99 EUR, `` or nothing for an offer without a price."""
    return "" if amount is None or pd.isna(amount) else f"{amount:,g} {currency}, "


def _expected_value_unit(quantiles: pd.DataFrame) -> str:
    # A market without prices serves p_convert as expected_value (recommend.offers).
    if quantiles["price_amount"].isna().all():
        return "expected value (p_convert: no prices)"
    return f"expected value, {_currency(quantiles)}"


def _currency(quantiles: pd.DataFrame) -> str:
    currencies = sorted(set(quantiles["currency"]))
    return ", ".join(currencies) or "local currency"

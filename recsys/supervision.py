"""What supervised families learn from: labelled (user, offer) examples of past windows.

A model fitted "on a split" scores users as they were at that split, so it must learn from
windows that ended by then. With ``holdout_days`` windows::

    ... tune | validation | holdout | snapshot

- fitted on ``train`` (scored on the holdout): examples of the validation window, features at
  the tune split;
- fitted on ``full`` (served): the validation window's and the holdout window's examples,
  each with the features of its own start;
- fitted on ``tune`` (search trials, scored on the validation window): the validation
  window's examples cross-fitted (users are split in two by hash, and each half is scored by
  the model fitted on the other).

Each fit also learns from the ``interactions.past_windows`` windows before the tune split
(``past_1`` the latest), each with the features at its own start: more labelled examples of
the same kind, none of them later than the split the model scores.

A window's examples are logged impressions and plan-page views, or, without impressions,
every offer users were eligible for; :mod:`recsys.labelling` says how each is labelled.

The served fit (``full``) also learns from the experiments named in
``train.models.conversion.experiments``: each offer a user of the test looked at, labelled by
whether they took it, with the features at the experiment's start (which must be one of this
snapshot's splits). The exploration slice among them reaches (user, offer) pairs no earlier
policy showed, so the next model learns from each test. The gate's holdout figures come from
the ``train`` fit, which never sees them: the next test measures what they add.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.config import Config
from recsys.eligibility import with_eligibility
from recsys.errors import RecsysError
from recsys.features import (
    event_values,
    offer_features,
    plan_tiers,
    user_features,
    with_pair_features,
)
from recsys.interactions.build import moments
from recsys.interactions.job import read_source
from recsys.labelling import IMPRESSIONS, experiment_log, fold_of, labelled_log, rows_source
from recsys.tables import read_table
from recsys.vocabulary import FULL, TRAIN, TUNE, past_split

log = logging.getLogger(__name__)

EXAMPLE_COLUMNS = ("market", "user_id", "offer_id", "label", "propensity", "is_organic", "fold")


@dataclass(frozen=True)
class Supervised:
    """A supervised family's fitting data for one split.

    ``examples_df``: :data:`EXAMPLE_COLUMNS` with the pair features
    (:func:`recsys.features.with_pair_features`); when ``cross_fit``, ``fold`` is 0 or 1, and
    -1 for a past window's examples, which every fold learns from.
    ``users_df``: user features at the split the model scores (what it is fitted "on").
    ``offers_df`` / ``tiers_df``: offer features and plan tiers. ``acceptances_df``: (market,
    offer_id, acceptances) before that split. ``source``: :data:`~recsys.labelling.IMPRESSIONS`
    or :data:`~recsys.labelling.CANDIDATES`.
    """

    examples_df: DataFrame
    users_df: DataFrame
    offers_df: DataFrame
    tiers_df: DataFrame
    acceptances_df: DataFrame
    source: str
    cross_fit: bool

    def unpersist(self) -> None:
        for df in (self.examples_df, self.users_df):
            df.unpersist()


class Supervision:
    """Builds :class:`Supervised` data for the splits of one snapshot (cached per split)."""

    def __init__(
        self,
        spark: SparkSession,
        config: Config,
        interactions_df: DataFrame,
        *,
        experiments: Sequence[str] = (),
    ) -> None:
        """``experiments``: the ids whose logged tests the ``full`` fit also learns from
        (``train.models.conversion.experiments`` when training; none for recommend, whose
        popularity reads only the acceptances)."""
        self.spark, self.config = spark, config
        self.experiments = tuple(experiments)
        self.snapshot = config.interactions.snapshot_date
        on_snapshot = F.col("snapshot_date") == F.lit(self.snapshot)
        self.interactions_df = interactions_df
        self.state_df = read_table(spark, config, S.USER_STATE).where(on_snapshot)
        self.profile_df = read_table(spark, config, S.USERS).select(
            "market", "user_id", "signup_date", "household_size_hint"
        )
        catalog_df = read_table(spark, config, S.CATALOG)
        self.catalog_df = catalog_df
        self.offers_df = offer_features(catalog_df, config.analyze.reference_offer).persist()
        self.tiers_df = plan_tiers(catalog_df).persist()
        self.log_df = read_table(spark, config, S.OFFER_LOG).where(on_snapshot)
        settings = config.interactions
        self.moments = moments(self.snapshot, settings.holdout_days, settings.past_windows)
        self.pasts = [past_split(n) for n in range(settings.past_windows, 0, -1)]
        self.source = self._source()
        self._users: dict[str, DataFrame] = {}
        self._cache: dict[str, Supervised] = {}

    def _check_past_splits(self) -> None:
        """Refuse past windows that build-interactions did not write.

        interaction_stats has a row for every split the build wrote, empty ones included,
        so a past window before any user's first event is not mistaken for a missing one.
        """
        if not self.pasts:
            return
        stats_df = read_table(self.spark, self.config, S.INTERACTION_STATS).where(
            F.col("snapshot_date") == F.lit(self.snapshot)
        )
        written = {r["split"] for r in stats_df.select("split").distinct().collect()}
        missing = [p for p in reversed(self.pasts) if p not in written]  # past_1 first
        if missing:
            raise RecsysError(
                f"interactions.past_windows={len(self.pasts)}, but interaction_stats for "
                f"snapshot {self.snapshot} lacks split {', '.join(missing)}: "
                "build-interactions ran with fewer past windows. Rerun build-interactions "
                "with this setting, or set interactions.past_windows to what it was built with"
            )

    def describe(self) -> str:
        """What the supervised examples are, for the log and the report."""
        if self.source == IMPRESSIONS:
            rows = (
                "logged impressions, accepted within interactions.attribution_days or not "
                "(and plan-page views where its organic_views parameter is on)"
            )
        else:
            rows = "every offer users were eligible for, labelled by what they converted to"
        if self.pasts:
            rows += f", stacked over {len(self.pasts)} earlier window(s) too"
        if self.experiments:
            rows += (
                "; the served fit also learns from the offers users looked at in experiments "
                + ", ".join(self.experiments)
            )
        return rows

    def _source(self) -> str:
        wanted = self.config.train.models.conversion.rows
        impressions = self.log_df.where(F.col("event_type") == S.OFFER_IMPRESSION)
        has_impressions = not impressions.isEmpty()
        if has_impressions:
            unusable = impressions.where(
                F.col("propensity").isNull() | (F.col("propensity") <= 0)
            ).count()
            if unusable:
                log.warning(
                    "offer_log: %s impressions without a positive propensity are left out of "
                    "the conversion model's examples and the policy values",
                    f"{unusable:,}",
                )
        return rows_source(wanted, has_impressions=has_impressions, snapshot=self.snapshot)

    def users_at(self, split: str) -> DataFrame:
        """User features at ``split`` (tune, train or full), persisted once."""
        if split not in self._users:
            rows_df = self.interactions_df.where(F.col("split") == split)
            state_df = self.state_df.where(F.col("split") == split)
            self._users[split] = user_features(
                rows_df,
                state_df,
                self.profile_df,
                at=self.moments[split].date(),
                values_df=self._values_at(self.moments[split]),
            ).persist(StorageLevel.MEMORY_AND_DISK)
        return self._users[split]

    def _values_at(self, moment: dt.datetime) -> DataFrame | None:
        """The value events' mean values before ``moment``, from the events source."""
        value_events = self.config.train.models.conversion.value_events
        if not value_events:
            return None
        return event_values(
            read_source(self.spark, self.config),
            value_events,
            self.config.interactions.max_values,
            before=moment,
        )

    def for_split(self, split: str) -> Supervised:
        """What a supervised family fitted on ``split`` learns from (see the module doc)."""
        if split in self._cache:
            return self._cache[split]
        own = {TUNE: [TUNE], TRAIN: [TUNE], FULL: [TUNE, TRAIN]}.get(split)
        if own is None:
            raise RecsysError(f"supervised families fit on tune, train or full, not {split!r}")
        self._check_past_splits()
        windows = [*self.pasts, *own]
        parts = [self._examples(start) for start in windows]
        if split == FULL:
            parts += self._experiment_examples()
        examples_df = parts[0]
        for part in parts[1:]:
            examples_df = examples_df.unionByName(part)
        moment = F.lit(self.moments[split])
        acceptances_df = (
            self.log_df.where((F.col("event_type") == S.ACCEPTANCE) & (F.col("event_ts") < moment))
            .groupBy("market", "offer_id")
            .agg(F.count(F.lit(1)).alias("acceptances"))
        )
        supervised = Supervised(
            examples_df.persist(StorageLevel.MEMORY_AND_DISK),
            self.users_at(split),
            self.offers_df,
            self.tiers_df,
            acceptances_df.persist(),
            self.source,
            cross_fit=split == TUNE,
        )
        self._cache[split] = supervised
        return supervised

    def logged(self, start: str) -> DataFrame:
        """The logged impressions of the window that begins at split ``start``:
        :data:`~recsys.evaluation.policy_value.LOGGED_COLUMNS`, propensities above 0."""
        return (
            labelled_log(self.log_df, *self._window(start))
            .where(~F.col("is_organic"))
            .select("market", "user_id", "offer_id", "propensity", "label")
        )

    def _window(self, start: str) -> tuple[dt.datetime, dt.datetime]:
        begin = self.moments[start]
        return begin, begin + dt.timedelta(days=self.config.interactions.holdout_days)

    def _eligible(self, split: str) -> DataFrame:
        """(market, user_id, offer_id) open to each user at ``split``."""
        state_df = self.state_df.where(F.col("split") == split)
        return (
            with_eligibility(state_df, self.catalog_df, self.config.recommend.eligibility)
            .where(F.col("eligible"))
            .select("market", "user_id", "offer_id")
        )

    def _experiment_examples(self) -> list[DataFrame]:
        """The labelled looked-at offers of ``train.models.conversion.experiments``, each
        with the features at its experiment's start."""
        ids = list(self.experiments)
        if not ids:
            return []
        key = "train.models.conversion.experiments"
        mine = F.col("experiment_id").isin(ids)
        logged_df = experiment_log(
            read_table(self.spark, self.config, S.EXPERIMENT_EXPOSURES).where(mine),
            read_table(self.spark, self.config, S.EXPERIMENT_OUTCOMES).where(mine),
        )
        found = {
            (r["experiment_id"], r["snapshot_date"]): (r["rows"], r["taken"])
            for r in logged_df.groupBy("experiment_id", "snapshot_date")
            .agg(F.count(F.lit(1)).alias("rows"), F.sum("label").alias("taken"))
            .collect()
        }
        splits = {moment.date(): split for split, moment in self.moments.items()}
        parts = []
        for experiment in ids:
            starts = sorted(d for e, d in found if e == experiment)
            if not starts:
                raise RecsysError(
                    f"{key}: {experiment!r} has no looked-at offers with an outcome in "
                    f"{self.config.table(S.EXPERIMENT_EXPOSURES)} and "
                    f"{self.config.table(S.EXPERIMENT_OUTCOMES)}; run simulate or load its logs"
                )
            if len(starts) > 1 or starts[0] not in splits:
                raise RecsysError(
                    f"{key}: {experiment!r} started on {', '.join(map(str, starts))}; its users' "
                    "features are read at its start, which must be one of this snapshot's "
                    f"splits ({', '.join(str(d) for d in sorted(splits))})"
                )
            rows, taken = found[(experiment, starts[0])]
            split = splits[starts[0]]
            log.info(
                "conversion: the served fit learns from experiment %s too: %s looked-at offers, "
                "%s taken, features at %s",
                experiment,
                f"{rows:,}",
                f"{int(taken):,}",
                starts[0],
            )
            pairs_df = (
                logged_df.where(F.col("experiment_id") == experiment)
                .join(self._eligible(split), on=["market", "user_id", "offer_id"], how="left_semi")
                .select(
                    "market",
                    "user_id",
                    "offer_id",
                    "label",
                    "propensity",
                    F.lit(False).alias("is_organic"),
                    fold_of(F.col("user_id")).alias("fold"),
                )
            )
            parts.append(
                with_pair_features(pairs_df, self.users_at(split), self.offers_df, self.tiers_df)
            )
        return parts

    def _examples(self, start: str) -> DataFrame:
        """The labelled pairs of the window that begins at split ``start``, with the
        features at its start."""
        begin, end = self._window(start)
        inside = (F.col("event_ts") >= F.lit(begin)) & (F.col("event_ts") < F.lit(end))
        eligible_df = self._eligible(start)
        if self.source == IMPRESSIONS:
            pairs_df = labelled_log(self.log_df, begin, end).join(
                eligible_df, on=["market", "user_id", "offer_id"], how="left_semi"
            )
        else:
            taken_df = (
                self.log_df.where((F.col("event_type") == S.ACCEPTANCE) & inside)
                .select("market", "user_id", "offer_id", F.lit(1.0).alias("label"))
                .distinct()
            )
            pairs_df = eligible_df.join(
                taken_df, on=["market", "user_id", "offer_id"], how="left"
            ).select(
                "market",
                "user_id",
                "offer_id",
                F.coalesce("label", F.lit(0.0)).alias("label"),
                F.lit(None).cast("double").alias("propensity"),
                F.lit(False).alias("is_organic"),
            )
        # A past window's examples are earlier than every split's: each fold learns from them.
        fold = F.lit(-1) if start in self.pasts else fold_of(F.col("user_id"))
        pairs_df = pairs_df.withColumn("fold", fold)
        return with_pair_features(pairs_df, self.users_at(start), self.offers_df, self.tiers_df)

    def unpersist(self) -> None:
        for supervised in self._cache.values():
            supervised.unpersist()
        for df in (*self._users.values(), self.offers_df, self.tiers_df):
            df.unpersist()

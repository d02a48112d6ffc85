"""The conversion model: P(the user takes the offer | the user's state, the offer), learned.

Factor models learn from positive events alone, so they learn what the logging policy showed.
This family learns who accepts what: gradient-boosted trees (XGBoost's PySpark estimator,
trained on the executors) over labelled (user, offer) examples of past windows
(:mod:`recsys.supervision`): logged impressions weighted by the inverse of their propensity
(clipped), or every eligible offer where no impressions are logged. One model is pooled over
markets, the market a feature, so small markets borrow strength. Offers enter by their
attributes as well as their id, so pairs the logging policy never showed still get a score
from what the model learned about similar users and similar offers.

The score is the logit of the predicted probability, so ``recommend`` serves the probability
itself as ``p_convert`` (its calibration is the identity for this family).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from typing import Any, Self

from pyspark.ml.feature import VectorAssembler
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys.errors import RecsysError
from recsys.features import with_pair_features
from recsys.labelling import FOLDS, fold_of
from recsys.models.base import EXPLAIN_KEYS, Recommender
from recsys.supervision import Supervised
from recsys.tokens import matches

log = logging.getLogger(__name__)

# Reason code when no behaviour of the user pushed the offer up: its terms suit the user.
OFFER_FIT = "offer_fit"
_NUMERIC = (
    "tier",
    "period_days",
    "trial_days",
    "discount_months",
    "relative_price",
    "tier_gap",
    "current_tier",
    "n_addons",
    "interest",
)
_FLAGS = ("has_used_trial", "is_student_verified", "holds_addon")
_VOCABULARY = "vocabulary.json"
_PROBABILITY = "_p"


def _logit(p: Column) -> Column:
    clipped = F.least(F.greatest(p, F.lit(1e-9)), F.lit(1 - 1e-9))
    return F.log(clipped / (1 - clipped))


class Conversion(Recommender):
    """Gradient-boosted P(accept) over (user, offer) pair features; see the module doc.

    Parameters (``train.models.conversion.params``): ``n_estimators``, ``max_depth``,
    ``learning_rate``, ``min_child_weight``, ``reg_lambda`` (XGBoost's), ``ips`` (weight
    impressions by 1 / propensity), ``max_weight`` (the clip of that weight),
    ``offer_id_feature`` (the offer's id as a feature beside its attributes; ``auto``: where
    some offers of a market share every attribute, see :meth:`_offer_ids`) and
    ``organic_views`` (learn from plan-page views too).
    """

    family = "conversion"
    supervised = True
    serves_probability = True

    def _fit(self, interactions_df: DataFrame, supervised: Supervised | None = None) -> None:
        if supervised is None:
            raise RecsysError(
                "the conversion family learns from labelled examples: fit it with the "
                "supervised data of its split (recsys.supervision.Supervision.for_split)"
            )
        self.users_df = supervised.users_df
        self.offers_df = supervised.offers_df
        self.tiers_df = supervised.tiers_df
        self.source = supervised.source
        self.vocabulary = _vocabulary(supervised)
        self.offer_ids = self._offer_ids()
        examples_df = supervised.examples_df
        if not self.params.get("organic_views", False):
            examples_df = examples_df.where(~F.col("is_organic"))
        examples_df = self._weighted(examples_df)
        folds = range(FOLDS) if supervised.cross_fit else [None]
        self.boosters = {}
        for fold in folds:
            rows_df = examples_df if fold is None else examples_df.where(F.col("fold") != fold)
            self.boosters[fold] = self._estimator().fit(self._assemble(rows_df))

    def _offer_ids(self) -> bool:
        """Whether the offer's id is a feature: as configured, or, with ``auto``, where
        some offers of a market share every attribute."""
        setting = self.params.get("offer_id_feature", "auto")
        if setting != "auto":
            return bool(setting)
        attributes = [c for c in self.offers_df.columns if c != "offer_id"]
        alike = (
            self.offers_df.groupBy(*attributes)
            .agg(F.array_sort(F.collect_list("offer_id")).alias("offers"))
            .where(F.size("offers") > 1)
            .select("market", "offers")
            .orderBy("market", "offers")
            .first()
        )
        if alike is not None:
            log.info(
                "conversion: the offer's id is a feature (offer_id_feature: auto): in %s, "
                "the attributes of %s are the same",
                alike["market"],
                ", ".join(alike["offers"]),
            )
        return alike is not None

    def _weighted(self, examples_df: DataFrame) -> DataFrame:
        if self.params.get("ips", False) and self.source == "impressions":
            clip = F.lit(float(self.params.get("max_weight", 20)))
            raw = F.coalesce(F.least(1 / F.col("propensity"), clip), F.lit(1.0))
        else:
            raw = F.lit(1.0)
        weighted = examples_df.withColumn("_raw_weight", raw)
        totals = weighted.agg(
            F.avg("_raw_weight").alias("mean"),
            F.sum("label").alias("accepted"),
            F.count(F.lit(1)).alias("examples"),
        ).first()
        examples, accepted = totals["examples"], int(totals["accepted"] or 0)
        if not examples or accepted in (0, examples):
            log.warning(
                "conversion: %s examples, %s accepted: one class only, so the model predicts "
                "the same probability for every pair",
                f"{examples:,}",
                f"{accepted:,}",
            )
        else:
            log.info(
                "conversion: learning from %s %s, %s accepted",
                f"{examples:,}",
                self._described(),
                f"{accepted:,}",
            )
        mean = totals["mean"] or 1.0
        return weighted.withColumn("weight", F.col("_raw_weight") / F.lit(mean))

    def _described(self) -> str:
        if self.source != "impressions":
            return "eligible offers"
        if self.params.get("organic_views", False):
            return "logged impressions and plan-page views"
        return "logged impressions"

    def _estimator(self):
        from xgboost.spark import SparkXGBClassifier  # the driver plans; executors fit

        p = self.params
        return SparkXGBClassifier(
            features_col="features",
            label_col="label",
            weight_col="weight",
            num_workers=1,
            n_estimators=int(p.get("n_estimators", 200)),
            max_depth=int(p.get("max_depth", 4)),
            learning_rate=float(p.get("learning_rate", 0.1)),
            min_child_weight=float(p.get("min_child_weight", 1.0)),
            reg_lambda=float(p.get("reg_lambda", 1.0)),
            tree_method="hist",
            random_state=self.seed,
            verbosity=0,
            verbose=False,  # no training log-loss line per tree
        )

    # -- features ------------------------------------------------------------------------
    def feature_names(self) -> list[str]:
        v = self.vocabulary
        names = [*_NUMERIC, *_FLAGS, "is_organic", "household_size_hint", "tenure_days"]
        names += [f"kind={k}" for k in v["kinds"]]
        names += [f"market={m}" for m in v["markets"]]
        names += [f"plan={p}" for p in v["plans"]]
        if self.offer_ids:
            names += [f"offer={o}" for o in v["offers"]]
        names += [f"holds={a}" for a in v.get("addons", [])]
        names += [f"value={e}" for e in v.get("value_events", [])]
        return names + [f"token={t}" for t in v["tokens"]]

    def _feature_columns(self, available: list[str]) -> list[Column]:
        v = self.vocabulary
        columns = [F.col(c).cast("double") for c in _NUMERIC]
        columns += [F.col(c).cast("double") for c in _FLAGS]
        # Examples from plan-page views learn the offset of an unprompted visit; every score
        # is that of a shown offer.
        organic = F.col("is_organic") if "is_organic" in available else F.lit(False)
        columns.append(organic.cast("double"))
        columns += [
            F.coalesce(F.col("household_size_hint").cast("double"), F.lit(-1.0)),
            F.coalesce(F.col("tenure_days").cast("double"), F.lit(-1.0)),
        ]
        columns += [(F.col("kind") == k).cast("double") for k in v["kinds"]]
        columns += [(F.col("market") == m).cast("double") for m in v["markets"]]
        columns += [(F.col("current_plan") == p).cast("double") for p in v["plans"]]
        if self.offer_ids:
            columns += [(F.col("offer_id") == o).cast("double") for o in v["offers"]]
        # Which add-ons are held, not only how many: what a customer already has says much
        # about what they take next.
        columns += [
            F.array_contains("active_addons", a).cast("double") for a in v.get("addons", [])
        ]
        # -1 where the user has no such event: no value is not a value of 0.
        columns += [
            F.coalesce(F.col("event_values")[e], F.lit(-1.0)) for e in v.get("value_events", [])
        ]
        columns += [F.coalesce(F.col("behaviour")[t], F.lit(0.0)) for t in v["tokens"]]
        return columns

    def _assemble(self, pairs_df: DataFrame) -> DataFrame:
        names = [f"_f{i}" for i in range(len(self.feature_names()))]
        flat = pairs_df.select(
            "*",
            *(
                c.alias(n)
                for c, n in zip(self._feature_columns(pairs_df.columns), names, strict=True)
            ),
        )
        return VectorAssembler(inputCols=names, outputCol="features").transform(flat).drop(*names)

    # -- scoring ---------------------------------------------------------------------------
    def _pairs(self, candidates_df: DataFrame) -> DataFrame:
        return with_pair_features(candidates_df, self.users_df, self.offers_df, self.tiers_df)

    def _predict(self, pairs_df: DataFrame, contributions: bool = False) -> DataFrame:
        """``pairs_df`` with :data:`_PROBABILITY`, and ``_contrib`` (per-feature SHAP values
        of the margin) when asked."""
        assembled = self._assemble(pairs_df)
        parts = []
        for fold, booster in self.boosters.items():
            rows_df = assembled
            if fold is not None:
                rows_df = assembled.where(fold_of(F.col("user_id")) == fold)
            extra = {booster.getParam("pred_contrib_col"): "_contrib"} if contributions else {}
            model = booster.copy(extra)
            predicted = model.transform(rows_df)
            parts.append(
                predicted.withColumn(
                    _PROBABILITY, F.get(_vector_to_array(F.col("probability")), 1)
                ).drop("features", "rawPrediction", "prediction", "probability")
            )
        result = parts[0]
        for part in parts[1:]:
            result = result.unionByName(part)
        return result

    def _score(self, candidates_df: DataFrame) -> DataFrame:
        predicted = self._predict(self._pairs(candidates_df))
        return predicted.select(
            "market", "user_id", "offer_id", _logit(F.col(_PROBABILITY)).alias("score")
        )

    def explain(
        self,
        lists_df: DataFrame,
        interactions_df: DataFrame,
        *,
        reason_tokens: Collection[str] | None = None,
    ) -> DataFrame:
        """The user's behaviour token (among ``reason_tokens``) that raised the offer's
        predicted probability most (its SHAP contribution), else :data:`OFFER_FIT`: the
        offer's terms and the user's plan and profile carried it."""
        names = self.feature_names()
        tokens = [
            (i, n.removeprefix("token="))
            for i, n in enumerate(names)
            if n.startswith("token=")
            and (reason_tokens is None or matches(n.removeprefix("token="), reason_tokens))
        ]
        keyed = self._predict(self._pairs(lists_df.select(*EXPLAIN_KEYS)), contributions=True)
        # XGBoost returns the contributions nested per output; a binary model has one.
        contributions = F.flatten(F.col("_contrib"))
        pushes = F.array(
            *(
                F.struct(contributions[i].alias("push"), F.lit(token).alias("token"))
                for i, token in tokens
            )
        )
        strongest = F.array_max(F.filter(pushes, lambda s: s["push"] > 0))
        reason = F.coalesce(strongest["token"], F.lit(OFFER_FIT)) if tokens else F.lit(OFFER_FIT)
        return (
            lists_df.select(*EXPLAIN_KEYS)
            .join(
                keyed.select(*EXPLAIN_KEYS, reason.alias("reason_code")),
                on=list(EXPLAIN_KEYS),
                how="left",
            )
            .select(*EXPLAIN_KEYS, F.coalesce("reason_code", F.lit(OFFER_FIT)).alias("reason_code"))
        )

    # -- state -----------------------------------------------------------------------------
    def unpersist(self) -> None:
        """Nothing to free: the features it holds belong to the run's
        :class:`~recsys.supervision.Supervision`, shared by every model fitted on the same
        split, which frees them at the end."""

    def _names(self) -> tuple[str, ...]:
        return ("users", "offers", "tiers")

    def _state(self) -> dict[str, DataFrame]:
        return {"users": self.users_df, "offers": self.offers_df, "tiers": self.tiers_df}

    def _load_state(self, state: dict[str, DataFrame]) -> None:
        self.users_df, self.offers_df, self.tiers_df = (
            state["users"],
            state["offers"],
            state["tiers"],
        )

    def save(self, path: str) -> None:
        if list(self.boosters) != [None]:
            raise RecsysError("a cross-fitted conversion model (a search trial) is not saved")
        super().save(path)
        spark = SparkSession.active()
        meta = {"vocabulary": self.vocabulary, "source": self.source, "offer_ids": self.offer_ids}
        spark.createDataFrame([(json.dumps(meta),)], "value string").coalesce(1).write.mode(
            "overwrite"
        ).text(f"{path}/{_VOCABULARY}")
        self.boosters[None].write().overwrite().save(f"{path}/booster")

    @classmethod
    def _restore(cls, spark: SparkSession, path: str, meta: dict[str, Any]) -> Self:
        from xgboost.spark import SparkXGBClassifierModel

        model = super()._restore(spark, path, meta)
        extra = json.loads(spark.read.text(f"{path}/{_VOCABULARY}").first()["value"])
        model.vocabulary, model.source = extra["vocabulary"], extra["source"]
        # Models saved before "auto" existed record only the boolean parameter.
        model.offer_ids = extra.get("offer_ids", meta["params"].get("offer_id_feature") is True)
        model.boosters = {None: SparkXGBClassifierModel.load(f"{path}/booster")}
        return model


def _vector_to_array(column: Column) -> Column:
    from pyspark.ml.functions import vector_to_array

    return vector_to_array(column)


def _vocabulary(supervised: Supervised) -> dict[str, list[str]]:
    """The categories and behaviour tokens the features spell out (catalogue-sized)."""
    offers = supervised.offers_df.select("offer_id", "kind").distinct().collect()
    markets = supervised.offers_df.select("market").distinct().collect()
    plans = supervised.tiers_df.select("current_plan").distinct().collect()
    tokens = (
        supervised.users_df.select(F.explode(F.map_keys("behaviour")).alias("token"))
        .distinct()
        .collect()
    )
    value_events = (
        supervised.users_df.select(F.explode(F.map_keys("event_values")).alias("event_type"))
        .distinct()
        .collect()
    )
    return {
        "kinds": sorted({r["kind"] for r in offers}),
        "offers": sorted({r["offer_id"] for r in offers}),
        "addons": sorted({r["offer_id"] for r in offers if r["kind"] == "addon"}),
        "markets": sorted(r["market"] for r in markets),
        "plans": sorted({r["current_plan"] for r in plans} | {"free"}),
        "tokens": sorted(r["token"] for r in tokens),
        "value_events": sorted(r["event_type"] for r in value_events),
    }

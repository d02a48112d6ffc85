"""The interface every recommender implements, and saving/loading them.

A model is fitted on rows of the ``interactions`` table (one split of one snapshot) and then
scores candidates: (user, offer) pairs that eligibility allows. It never invents offers and
never drops a candidate; a user it knows nothing about gets a null score, which ranking puts
last (see :func:`recsys.ranking.top_k`).

A saved model is a folder: ``model.json`` (family, hyperparameters, seed) and the fitted state
as Parquet written by Spark, so it can live on any filesystem Spark can write.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from typing import Any, ClassVar, Self

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys.errors import RecsysError

# What fit reads: rows of one split of the ``interactions`` table.
FIT_COLUMNS = ("market", "user_idx", "item_idx", "user_id", "item_id", "is_offer", "confidence")
# What score reads: eligible (user, offer) pairs, with the plan the user holds.
CANDIDATE_COLUMNS = ("market", "user_id", "offer_id", "current_plan")
SCORE_COLUMNS = ("market", "user_id", "offer_id", "score")
EXPLAIN_KEYS = ("market", "user_id", "offer_id")
_META = "model.json"


def require_columns(df: DataFrame, columns: tuple[str, ...], what: str) -> None:
    """Fail with the missing column names, from the schema alone (no Spark job)."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RecsysError(f"{what} lacks columns {missing}; it has {df.columns}")


class Recommender(ABC):
    """Fit on interactions, score candidate offers, explain them, save and load.

    Parameters
    ----------
    params : mapping of str to Any, optional
        The family's hyperparameters (``train.models.<family>.params``).
    seed : int, default 0
        Makes fitting repeatable.
    market_params : mapping of str to mapping, optional
        Per-market overrides of ``params``; only families that fit one model per market use
        them (``train.models.<family>.markets``).

    Attributes
    ----------
    family : str
        The family's name, as in the config and the registry.
    supervised : bool
        Whether :meth:`fit` reads labelled examples (:class:`recsys.supervision.Supervised`)
        beside the interaction rows.
    serves_probability : bool
        Whether the score is the logit of P(accept), served without calibration.
    """

    family: ClassVar[str]
    # Whether fit reads supervised data (recsys.supervision.Supervised) beside the rows.
    supervised: ClassVar[bool] = False
    # Whether score is the logit of a probability of acceptance, served without calibration.
    serves_probability: ClassVar[bool] = False

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        seed: int = 0,
        market_params: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.params = dict(params or {})
        self.market_params = {m: dict(p) for m, p in (market_params or {}).items()}
        self.seed = seed

    def params_for(self, market: str) -> dict[str, Any]:
        """The hyperparameters for ``market``: ``params`` with that market's overrides."""
        return {**self.params, **self.market_params.get(market, {})}

    def fit(self, interactions_df: DataFrame, supervised: Any = None) -> Self:
        """Learn from one split's rows.

        Parameters
        ----------
        interactions_df : DataFrame
            One split of ``interactions``, with :data:`FIT_COLUMNS`.
        supervised : recsys.supervision.Supervised, optional
            Labelled examples of the windows before that split, for the families that learn
            from them (``supervised = True``); the others ignore it.

        Returns
        -------
        Recommender
            This model, fitted.
        """
        require_columns(interactions_df, FIT_COLUMNS, f"{self.family}.fit input")
        rows_df = interactions_df.select(*FIT_COLUMNS)
        if self.supervised:
            self._fit(rows_df, supervised)
        else:
            self._fit(rows_df)
        return self

    def score(self, candidates_df: DataFrame) -> DataFrame:
        """Score every candidate; never adds or drops one.

        Parameters
        ----------
        candidates_df : DataFrame
            :data:`CANDIDATE_COLUMNS`: (market, user_id, offer_id, current_plan), one row per
            eligible pair.

        Returns
        -------
        DataFrame
            :data:`SCORE_COLUMNS`, one row per candidate: higher is better, null where the
            model knows nothing of the user (ranking puts those last).
        """
        require_columns(candidates_df, CANDIDATE_COLUMNS, f"{self.family}.score input")
        return self._score(candidates_df.select(*CANDIDATE_COLUMNS)).select(
            *SCORE_COLUMNS[:3], F.col("score").cast("double").alias("score")
        )

    @abstractmethod
    def explain(
        self,
        lists_df: DataFrame,
        interactions_df: DataFrame,
        *,
        reason_tokens: Collection[str] | None = None,
    ) -> DataFrame:
        """A reason a marketer can read for each listed offer: (market, user_id, offer_id,
        reason_code).

        Parameters
        ----------
        lists_df : DataFrame
            (market, user_id, offer_id) the model ranked high.
        interactions_df : DataFrame
            The :data:`FIT_COLUMNS` rows it was fitted on.
        reason_tokens : collection of str, optional
            The behaviour tokens that may be a reason (``recommend.reason_tokens``; an entry
            ending in ``*`` is a prefix pattern); None: any. A family whose strongest token
            is not among them gives the strongest that is, else its generic reason.
        """

    def unpersist(self) -> None:
        """Free cached state (after the model is saved or no longer needed)."""
        for state_df in self._state().values():
            state_df.unpersist()

    def save(self, path: str) -> None:
        """Write the model to the folder ``path`` on any filesystem Spark writes to:
        ``model.json`` (family, parameters, seed) and each part of the fitted state as
        Parquet. :func:`load_model` reads it back."""
        spark = SparkSession.active()
        meta = {
            "family": self.family,
            "params": self.params,
            "market_params": self.market_params,
            "seed": self.seed,
        }
        spark.createDataFrame([(json.dumps(meta),)], "value string").coalesce(1).write.mode(
            "overwrite"
        ).text(f"{path}/{_META}")
        for name, state_df in self._state().items():
            state_df.write.mode("overwrite").parquet(f"{path}/{name}")

    @classmethod
    def _restore(cls, spark: SparkSession, path: str, meta: dict[str, Any]) -> Self:
        model = cls(meta["params"], seed=meta["seed"], market_params=meta["market_params"])
        model._load_state({name: spark.read.parquet(f"{path}/{name}") for name in model._names()})
        return model

    @abstractmethod
    def _fit(self, interactions_df: DataFrame) -> None: ...

    @abstractmethod
    def _score(self, candidates_df: DataFrame) -> DataFrame: ...

    @abstractmethod
    def _names(self) -> tuple[str, ...]:
        """Names of the DataFrames that make up the fitted state."""

    @abstractmethod
    def _state(self) -> dict[str, DataFrame]: ...

    @abstractmethod
    def _load_state(self, state: dict[str, DataFrame]) -> None: ...


def load_model(spark: SparkSession, path: str) -> Recommender:
    """A model saved by :meth:`Recommender.save`, of whichever family it is.

    Parameters
    ----------
    spark : SparkSession
    path : str
        The folder :meth:`Recommender.save` wrote.

    Raises
    ------
    RecsysError
        When the folder holds no saved model, or one of a family this version lacks.
    """
    from recsys.models import FAMILIES  # the registry imports this module

    try:
        meta = json.loads(spark.read.text(f"{path}/{_META}").first()["value"])
    except Exception as exc:  # a missing folder surfaces as an AnalysisException
        raise RecsysError(f"no saved model at {path}: {str(exc).splitlines()[0]}") from None
    family = FAMILIES.get(meta.get("family"))
    if family is None:
        raise RecsysError(f"{path}: unknown model family {meta.get('family')!r}")
    return family._restore(spark, path, meta)

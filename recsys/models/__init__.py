"""Recommenders behind one interface (:class:`~recsys.models.base.Recommender`).

Baselines (popularity, the upgrade ladder), collaborative-filtering models (Spark MLlib ALS,
``implicit`` ALS and BPR) and the supervised conversion model all fit on a split of the
``interactions`` table and score (user, candidate offer) pairs, so evaluation, promotion and
serving treat them alike.
"""

from __future__ import annotations

from recsys.models.base import Recommender, load_model
from recsys.models.baselines import Ladder, Popularity
from recsys.models.conversion import Conversion
from recsys.models.implicit_models import ImplicitALS, ImplicitBPR
from recsys.models.spark_als import SparkALS

FAMILIES: dict[str, type[Recommender]] = {
    model.family: model
    for model in (Popularity, Ladder, SparkALS, ImplicitALS, ImplicitBPR, Conversion)
}
BASELINES = (Popularity.family, Ladder.family)

__all__ = ["BASELINES", "FAMILIES", "Recommender", "load_model"]

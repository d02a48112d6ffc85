"""Experiment arms and the exploration slice, by salted hashes of user_id (docs/experiments.md).

A user's arm is a pure function of the experiment id and the user id: stable across reruns
and machines, independent across experiments (a new id reshuffles everyone), and needing no
state. Spark's ``xxhash64`` is a built-in with a fixed seed, so no UDF is involved.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from recsys.columns import literal_map, unit
from recsys.config import ExperimentConfig
from recsys.vocabulary import ARMS, HOLDOUT_ARM


def arm_of(experiment: ExperimentConfig, user_id: Column | str = "user_id") -> Column:
    """The arm of each user: consecutive slices of [0, 1) of the configured shares."""
    draw = unit(f"{experiment.id}/arm", user_id)
    bound = 0.0
    arm = None
    for name in ARMS:
        bound += experiment.share(name)
        when = draw < F.lit(bound)
        arm = F.when(when, F.lit(name)) if arm is None else arm.when(when, F.lit(name))
    return arm.otherwise(F.lit(HOLDOUT_ARM))


def epsilon_of(experiment: ExperimentConfig) -> Column:
    """Each row's market's exploration share: its pin in ``experiment.markets``, else the
    default ``epsilon``."""
    if not experiment.markets:
        return F.lit(experiment.epsilon)
    pinned = literal_map(experiment.markets)[F.col("market")]
    return F.coalesce(pinned, F.lit(experiment.epsilon))


def is_exploring(experiment: ExperimentConfig, epsilon: Column) -> Column:
    """Whether a user of a treatment or control list is shown a random list instead: a draw
    independent of the arm's, below the market's epsilon."""
    return unit(f"{experiment.id}/explore", "user_id") < epsilon

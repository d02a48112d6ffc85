"""The words one stage of the flow writes and another reads, declared once.

build-interactions names the splits that train and recommend read; recommend assigns the
arms that simulate and analyze compare; the reason codes of ``plan_recommendations`` are read
by its validation, the run summary, the notebooks and the experiment's analysis. Each stage
imports these names from here, so no stage spells another stage's word, and this module
imports nothing of the flow, so every stage may import it.

Column names are not declared here. A Spark column reads best as its literal name
(``F.col("market")``, ``on=["market", "user_id"]``), as the PySpark style guides write it,
and each table's columns are declared by its schema in :mod:`recsys.schemas`. The one tuple
of columns here, :data:`KEYS`, is the grain of a user for the code that passes it around as
one value (``groupBy(*KEYS)``, a ``keys=`` default).
"""

from __future__ import annotations

# The grain of a user: markets are separate worlds, and a user id is unique within its market.
KEYS = ("market", "user_id")

# Splits of the interaction rows (recsys.interactions.build): each window is
# ``interactions.holdout_days`` long, ``... tune | validation | holdout | snapshot``.
TUNE, VALIDATION, TRAIN, HOLDOUT, FULL = "tune", "validation", "train", "holdout", "full"
SPLITS = (TUNE, VALIDATION, TRAIN, HOLDOUT, FULL)


def past_split(n: int) -> str:
    """The name of the split that starts ``n`` windows before the tune split.

    Parameters
    ----------
    n : int
        How many windows before the tune split, at least 1 (``past_1`` is the latest).

    Returns
    -------
    str
        ``past_<n>``.
    """
    return f"past_{n}"


# Experiment arms (recsys.recommend.assign): the model's lists, the baseline's, and no offer.
# The arm shown nothing is HOLDOUT_ARM, so that it is never mistaken for the HOLDOUT split (a
# window of time) although both are spelled "holdout" where they are stored.
TREATMENT, CONTROL, HOLDOUT_ARM = "treatment", "control", "holdout"
ARMS = (TREATMENT, CONTROL, HOLDOUT_ARM)

# Reason codes of plan_recommendations that say why the row is not the model's own choice.
# A row of the model's list carries the model's explanation instead (e.g. an offer's signal).
FALLBACK_REASON = "fallback_popular"  # an offer the model could not score, ranked by popularity
EXPLORATION_REASON = "exploration"  # a list of the exploration slice: eligible offers shuffled
HOLDOUT_REASON = "holdout"  # the rank-0 row of a user of the holdout arm
NO_ELIGIBLE_OFFER = "no_eligible_offer"  # the rank-0 row of a user with nothing eligible

# The label of figures pooled over every market (or every arm) in train's metric tables, its
# MLflow metrics and the notebooks. experiment_results pools under its own market value,
# recsys.schemas.POOLED.
ALL = "all"

"""The trainer fits a supervised family once per parameters and split, and the fit it reuses
scores every pair as a fresh one would."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality

from recsys.models.conversion import Conversion
from recsys.training.trainer import Trainer
from recsys.vocabulary import HOLDOUT, TRAIN, TUNE


@pytest.mark.slow
def test_the_direct_model_is_the_conversion_trial_with_the_same_parameters(spark, served):
    _, config = served
    trainer = Trainer(spark, config)
    defaults = config.train.models.conversion.params.model_dump()
    direct = trainer.reward_model(TRAIN)
    assert trainer.fitted("conversion", dict(defaults), trainer.rows(TRAIN), split=TRAIN) is direct
    shallower = {**defaults, "max_depth": 2}
    assert trainer.fitted("conversion", shallower, trainer.rows(TRAIN), split=TRAIN) is not direct
    assert trainer.fitted("conversion", defaults, trainer.rows(TUNE), split=TUNE) is not direct

    pairs_df = trainer.window(TRAIN, HOLDOUT).logged.candidates_df
    fresh = Conversion(defaults, seed=trainer.settings.seed).fit(
        trainer.rows(TRAIN), trainer.supervision.for_split(TRAIN)
    )
    assert pairs_df.count() > 100
    assert_df_equality(
        direct.score(pairs_df), fresh.score(pairs_df), ignore_row_order=True, ignore_nullable=True
    )
    trainer.supervision.unpersist()
    trainer.interactions_df.unpersist()

"""What the notebooks under ``notebooks/`` call: every query, reshaping and chart they show.

The notebooks own no logic (STYLE.md): each cell calls a function of this package, so what a
notebook shows is tested here and reads the same tables and MLflow runs as the jobs do.

- :mod:`~recsys.notebooks.workspace`: the config the pipeline ran with, a Spark session on
  its catalog, an MLflow client, and the folder the figures are saved to;
- :mod:`~recsys.notebooks.model_comparison`: the `train` runs and the registry's aliases;
- :mod:`~recsys.notebooks.recommendation_inspection`: what a market's users are served, and
  why (``plan_recommendations_current``, ``eligibility_audit``);
- :mod:`~recsys.notebooks.experiment_readout`: ``experiment_results``,
  ``experiment_policy_values`` and the decision report of `analyze`.
"""

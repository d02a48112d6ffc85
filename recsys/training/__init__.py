"""The `train` step: fit, evaluate, search, track and promote (docs/models.md)."""

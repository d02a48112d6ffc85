"""The `train` step: fit, evaluate, search, track and promote (DESIGN.md section 7)."""

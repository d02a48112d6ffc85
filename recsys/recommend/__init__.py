"""The `recommend` step: eligible, calibrated, localized top-k lists per user, with experiment
arms, published atomically (DESIGN.md sections 4, 8-10)."""

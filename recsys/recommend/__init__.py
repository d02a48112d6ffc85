"""The `recommend` step: eligible, calibrated, localized top-k lists per user, with experiment
arms, published atomically (docs/recommendations.md)."""

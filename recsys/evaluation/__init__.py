"""Offline evaluation: ranking metrics and confidence intervals."""

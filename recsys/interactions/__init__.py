"""build-interactions: from raw events to per-market user-item matrices."""

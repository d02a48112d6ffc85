"""Hyperparameter trials: the configured defaults first, then grid points drawn by seed."""

from __future__ import annotations

import itertools
import random
from typing import Any

from recsys.config import ALSSpec, BPRSpec


def trials(spec: ALSSpec | BPRSpec, max_trials: int, seed: int) -> list[dict[str, Any]]:
    """Up to ``max_trials`` distinct parameter sets for a family.

    The first is ``spec.params`` (what runs when nobody searches); the rest are points of the
    grid ``spec.search`` spans around it, drawn without replacement with ``seed``, so a rerun
    tries the same ones.
    """
    default = spec.params.model_dump()
    keys = sorted(spec.search)
    grid = [
        spec.with_params(dict(zip(keys, values, strict=True))).model_dump()
        for values in itertools.product(*(spec.search[k] for k in keys))
    ]
    others = [params for params in grid if params != default]
    unique = [p for i, p in enumerate(others) if p not in others[:i]]
    drawn = random.Random(seed).sample(unique, min(len(unique), max_trials - 1))
    return [default, *drawn]

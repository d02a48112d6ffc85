"""Write `customers.csv`: the walkthrough's wide table (docs/walkthrough.md).

5,000 customers of a made-up insurer in two countries, one row each: three 0/1 product
columns and two profile columns. Which products a customer holds depends on the age band
alone, and each band has its own favourite, so a model that reads the age can do better than
the products' overall popularity; the area is noise. Run from the repository root:
`python data/walkthrough/generate.py`; the same seed writes the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

PRODUCTS = ("travel", "car", "home")
HOLDS = {  # P(holds the product) by age band
    "young": {"travel": 0.85, "car": 0.45, "home": 0.10},
    "middle": {"travel": 0.20, "car": 0.80, "home": 0.45},
    "senior": {"travel": 0.10, "car": 0.40, "home": 0.85},
}
AGES = {"young": (18, 34), "middle": (35, 54), "senior": (55, 80)}


def customers(n: int = 5_000, seed: int = 11) -> pd.DataFrame:
    """``n`` customers; every one holds at least one product."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, band in enumerate(rng.choice(list(AGES), size=n, p=[0.35, 0.40, 0.25])):
        held = {p for p in PRODUCTS if rng.random() < HOLDS[band][p]}
        held = held or {max(PRODUCTS, key=HOLDS[band].get)}
        low, high = AGES[band]
        rows.append(
            {
                "customer": f"c{i:05d}",
                "country": "GB" if rng.random() < 0.6 else "IE",
                "age": int(rng.integers(low, high + 1)),
                "area": str(rng.choice(["city", "rural"])),
                **{p: int(p in held) for p in PRODUCTS},
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    customers().to_csv(Path(__file__).with_name("customers.csv"), index=False)

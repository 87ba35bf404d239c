"""How sure a comparison of two rows is: a paired bootstrap over the evaluation questions.

The table's average is the mean over benchmarks of each benchmark's mean EM, so the bootstrap resamples questions
*within* each benchmark (the same questions for both rows: they answered the same ones) and recomputes that
average. At CPU scale most differences are a handful of questions out of ~700; the interval says when a gap is
within what resampling the questions alone would produce.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def paired_bootstrap(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]], weight_b: float = 1.0,
                     n_boot: int = 5000, level: float = 0.95, seed: int = 0) -> dict:
    """Set-averaged `a - weight_b * b` and its percentile interval; a and b map benchmark -> per-question scores
    in the same question order. weight_b != 1 tests ratios ("a reaches 90% of b": weight_b = 0.9)."""
    if set(a) != set(b):
        raise ValueError(f"paired_bootstrap: benchmarks differ: {sorted(set(a) ^ set(b))}")
    rng = np.random.default_rng(seed)
    point, boots = 0.0, np.zeros(n_boot)
    for ds in a:
        d = np.asarray(a[ds], dtype=float) - weight_b * np.asarray(b[ds], dtype=float)
        if d.ndim != 1 or len(d) == 0 or len(a[ds]) != len(b[ds]):
            raise ValueError(f"paired_bootstrap: {ds}: rows have {len(a[ds])} and {len(b[ds])} questions")
        point += d.mean()
        boots += d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    k = len(a)
    lo, hi = np.quantile(boots / k, [(1 - level) / 2, (1 + level) / 2])
    return {"diff": point / k, "lo": float(lo), "hi": float(hi), "level": level, "n_boot": n_boot}


def verdict(diff: float, lo: float) -> str:
    """'yes' when the claimed direction holds beyond resampling noise, 'no' when the point estimate does not even
    go that way, 'within noise' in between."""
    if lo > 0:
        return "yes"
    return "no" if diff <= 0 else "within noise"

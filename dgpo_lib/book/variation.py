"""Run-to-run variation: a stage trained a second time (benchmarks/compare_runs.py) moves its evaluation by more
than the question-resampling interval of one run can show, so the results chapter sets it beside the bootstrap."""
from __future__ import annotations

import pandas as pd

from dgpo_lib.methods import row_label


def retrained_evaluations(preset: str, folder=None) -> pd.DataFrame:
    """A row per evaluation whose stage ran again in `compare_runs_<preset>.json`: EM of the first and the second
    training on the same questions, and the paired 95% interval of the difference. Empty when no such file."""
    from dgpo_lib.book.benchmarks import benchmark_json

    d = benchmark_json(f"compare_runs_{preset}", folder) or {}
    rows = []
    for s in d.get("stages", []):
        if s.get("what") == "eval records" and s.get("ran_again"):
            rows.append({"row": row_label(s["stage"].removeprefix("eval_")), "first training": s["em_a"],
                         "second training": s["em_b"],
                         "difference [95% CI]": f"{s['em_b_minus_a']:+.3f} [{s['ci95_lo']:+.3f}, {s['ci95_hi']:+.3f}]",
                         "same answers": f"{s['equal']:,} of {s['of']:,}"})
    return pd.DataFrame(rows)


def spread_reading(retrained: pd.DataFrame, res: dict, rows) -> str:
    """One sentence: the largest retraining move beside the spread of the KD-family rows of this run's table."""
    if retrained.empty:
        return ""
    from dgpo_lib.methods import kd_baselines

    moves = (retrained["second training"] - retrained["first training"]).abs()
    i = int(moves.idxmax())
    kd = [r for r in kd_baselines(rows) if r in res["avg_em"]]
    lo, hi = (min(res["avg_em"][r] for r in kd), max(res["avg_em"][r] for r in kd)) if kd else (None, None)
    text = (f"Trained a second time, {retrained.loc[i, 'row']} moved from {retrained.loc[i, 'first training']:.3f} "
            f"to {retrained.loc[i, 'second training']:.3f} average EM, with "
            f"{retrained.loc[i, 'same answers']} evaluation answers the same.")
    if kd:
        text += (f" The KD-family rows of the table span {lo:.3f}-{hi:.3f}: differences among them smaller than "
                 f"{moves.max():.3f} may be a retraining's luck, which the bootstrap over questions does not see.")
    return text

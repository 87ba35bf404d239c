"""What the results chapter decides, computed once at the top of the page: the rows and their results, the RL rows
that are their cold start, the claims and their counts, and the run-to-run spread."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass
class Overview:
    rows: list[str]
    res: dict
    cold: list[str]
    selected: dict[str, int]
    claims: pd.DataFrame
    summary: dict
    retrained: pd.DataFrame
    spread: str


def results_overview(run, cfg) -> Overview:
    """The table's rows (RL rows at the checkpoint selected on validation, their last step beside them), with the
    claims tested and the retraining spread of this preset (benchmarks/results/compare_runs_<preset>.json)."""
    from dgpo_lib.book.claims import claims_frame, claims_summary
    from dgpo_lib.book.selection import cold_start_rows, selected_steps
    from dgpo_lib.book.variation import retrained_evaluations, spread_reading
    from dgpo_lib.pipeline.keys import final_rows

    rows = list(cfg.eval.methods)
    res = run.results(rows + final_rows(cfg))
    selected = selected_steps(run, rows)
    cold = cold_start_rows(selected)
    claims = claims_frame(res, cold_starts=cold)
    retrained = retrained_evaluations(cfg.preset)
    return Overview(rows, res, cold, selected, claims, claims_summary(claims), retrained,
                    spread_reading(retrained, res, rows))


def dgpo_selection(o: Overview) -> str:
    """A sentence on DGPO's checkpoint, for the book's opening page."""
    if "dgpo" in o.cold:
        return "DGPO's selected checkpoint is step 0, its KD cold start, so its row is KD's"
    if "dgpo" in o.selected:
        return f"DGPO's selected checkpoint is step {o.selected['dgpo']} of its RL run"
    return "DGPO is evaluated at its selected checkpoint"

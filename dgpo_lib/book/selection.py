"""Which checkpoint an RL row of the results is: the step selected on validation EM, and whether that step is the
model RL started from (step 0), in which case the row measures its cold start, not RL."""
from __future__ import annotations

from typing import Sequence

from dgpo_lib.methods import method, row_label


def selected_step(val: list[dict]) -> int | None:
    """The step checkpoint selection keeps from a validation curve: the earliest of the best validation EMs."""
    return max(val, key=lambda r: r["val_em"])["step"] if val else None


def selected_steps(run, rows: Sequence[str]) -> dict[str, int]:
    """{RL row: its selected step} for the rows evaluated at their selected checkpoint (not `row@final`) whose
    validation curve this run holds."""
    out = {}
    for r in rows:
        if "@" in r or not _is_rl(r):
            continue
        step = selected_step(run.metrics(f"rl_{r}", "val_metrics.jsonl"))
        if step is not None:
            out[r] = step
    return out


def cold_start_rows(selected: dict[str, int]) -> list[str]:
    """The RL rows whose selected checkpoint is step 0: their evaluation is that of the model they started from."""
    return [r for r, step in selected.items() if step == 0]


def cold_start_label(row: str) -> str:
    """The row's name in tables when its selected checkpoint is its cold start, saying so."""
    start = method(row).start
    return f"{row_label(row)} (= its {row_label(start)} start: step 0 selected)"


def relabel_cold_starts(labels: Sequence[str], rows: Sequence[str], cold: Sequence[str]) -> list[str]:
    """`labels` (one per row, in order) with each cold-start row's label replaced by `cold_start_label`."""
    return [cold_start_label(r) if r in cold else lab for lab, r in zip(labels, rows)]


def _is_rl(row: str) -> bool:
    try:
        return method(row).stage == "rl"
    except ValueError:
        return False


def ablation_runs(run, cfg, only=None):
    """Chapter 06's runs: DGPO and the preset's ablations (`only`: a subset), each trained or reused, with the RL
    ones' training curves and every run's validation curve: `(variants, skipped, stages, curves, val)`."""
    variants = ["dgpo"] + [v for v in cfg.eval.ablations if only is None or v in only]
    skipped = [v for v in cfg.eval.ablations if v not in variants]
    stages = {v: method(v).stage_name for v in variants}  # kd_<row> or rl_<row>
    for v in variants:  # trains the variant, or reuses the cached stage
        run.stage(stages[v])
    curves = {v: run.metrics(stages[v]) for v in variants if method(v).stage == "rl"}
    val = {v: run.metrics(stages[v], "val_metrics.jsonl") for v in variants}
    return variants, skipped, stages, curves, val

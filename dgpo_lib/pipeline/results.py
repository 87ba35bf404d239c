"""The results table of a run: every row's EM per benchmark and the per-question EM the claims' paired bootstrap
resamples (dgpo_lib/evaluation/stats.py), written with provenance."""
from __future__ import annotations

from dgpo_lib.io_utils import atomic_write_json, provenance


def per_question(run, rows: list[str]) -> dict:
    """Question ids per benchmark and every row's EM on each, in that order."""
    from dgpo_lib.train.trajectories import read_records

    ids: dict[str, list[str]] = {}
    em: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        em[r] = {}
        for ds in run.cfg.data.eval_sets:
            path = run.stage_dir(f"eval_{r}") / f"records_{ds}.jsonl"
            by_id = {x["id"]: float(x["em"]) for x in read_records(path)}
            ids.setdefault(ds, list(by_id))
            if set(by_id) != set(ids[ds]):
                raise ValueError(f"{path}: its questions differ from those of eval_{rows[0]}")
            em[r][ds] = [by_id[i] for i in ids[ds]]
    return {"question_ids": ids, "em_per_question": em}


def results(run, rows: list[str], file: str) -> dict:
    """Evaluate every row (each a cached stage) and write `run.dir / file`."""
    table = {r: run.evaluate(r) for r in rows}
    res = {"preset": run.cfg.preset, "eval_sets": list(run.cfg.data.eval_sets),
           "em": {r: {ds: v["em"] for ds, v in s["per_set"].items()} for r, s in table.items()},
           "avg_em": {r: s["avg_em"] for r, s in table.items()},
           "searches": {r: {ds: v["searches"] for ds, v in s["per_set"].items()} for r, s in table.items()},
           **per_question(run, rows), "provenance": provenance(run.cfg)}
    atomic_write_json(run.dir / file, res)
    return res

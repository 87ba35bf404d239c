"""End to end: wall time and peak memory of each stage of a reproduction, read from the stage records that the
pipeline writes (`done.json`) and the runner's log; prints each stage's share of the
`cpu` run's 8-hour budget.

    /usr/bin/time -v bash scripts/setup.sh 2> runs/setup.time
    /usr/bin/time -v .venv/bin/python -m dgpo_lib.book.reproduce --preset cpu 2> runs/reproduce-cpu.time
    /usr/bin/time -v .venv/bin/jupyter-book build . -W 2> runs/book.time
    .venv/bin/python benchmarks/end_to_end.py --preset cpu --time-log setup=runs/setup.time \
        reproduce=runs/reproduce-cpu.time book=runs/book.time

Stages run one by one before the notebooks (python -m dgpo_lib.pipeline.run_stage): their records are summed, and the index
build, which no stage record holds, is timed on its own (into an empty run_root, so that it builds):

    /usr/bin/time -v .venv/bin/python -m dgpo_lib.pipeline.run_stage index --preset cpu run_root=runs/fresh 2> runs/index.time
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from common import table, write

from dgpo_lib.cli import parse, parser
from dgpo_lib.config import load_config
from dgpo_lib.data.loaders import REPO_ROOT
from dgpo_lib.pipeline import Run, row_stage, work_s
from dgpo_lib.book.benchmarks import stage_kind

BUDGET_S = 8 * 3600  # the cpu preset's whole run on 2 cores, peak memory at most 12 GiB


def main():
    ap = parser(__doc__)
    ap.add_argument("--time-log", nargs="*", default=[], metavar="PART=FILE",
                    help="stderr of /usr/bin/time -v around each part of the main job")
    a = parse(ap)
    cfg = load_config(a.preset, a.overrides)
    run = Run(cfg, progress=False)
    rows, finished = [], {}
    for name, d in run.stage_records().items():
        work = work_s(d)
        finished[name] = datetime.fromisoformat(d["created"]).timestamp()
        rows.append({"stage": name, "wall_s": d.get("wall_s", 0.0), "earlier_s": d.get("earlier_processes_s", 0.0),
                     "paused_s": d.get("paused_s", 0),
                     "work_s": work, "peak_rss_gib": d.get("peak_rss_gib"), "budget_share": work / BUDGET_S})
    rows.sort(key=lambda r: -r["work_s"])
    total = sum(r["work_s"] for r in rows)
    parts = []
    for spec in a.time_log:
        name, _, path = spec.partition("=")
        wall, peak = parse_time_log(Path(path))
        parts.append({"part": name, "wall_s": wall, "peak_rss_gib": peak, "budget_share": (wall or 0) / BUDGET_S})
    # the notebooks' wall times (the runner's record; a partial re-run fills in the others from papermill)
    rec = REPO_ROOT / "book" / "executed" / "reproduce.json"
    notebooks, nb_started = {}, None
    if rec.exists():
        r = json.loads(rec.read_text())
        if r.get("config_hash") == cfg.hash():
            notebooks = r.get("notebook_wall_s", {})
            nb_started = datetime.fromisoformat(r["created"]).timestamp() - r.get("total_wall_s", 0)
    # run stage by stage (python -m dgpo_lib.pipeline.run_stage, e.g. across sessions), every stage finished before the notebooks
    # started, so they only read cached results: the one-pass main job is then the stages' work plus the notebooks
    stages_before = bool(finished) and nb_started is not None and max(finished.values()) < nb_started
    print(table(rows, ["stage", "wall_s", "earlier_s", "paused_s", "work_s", "budget_share", "peak_rss_gib"]))
    print(f"stages total {total / 60:.1f} min of work (machine time: wall less recorded pauses, times the share of the machine used); "
          f"peak RSS of any stage {max([r['peak_rss_gib'] or 0 for r in rows] + [0]):.2f} GiB")
    if notebooks:
        print(table([{"notebook": k, "wall_s": v} for k, v in notebooks.items()], ["notebook", "wall_s"]))
    if parts:
        print(table(parts, ["part", "wall_s", "budget_share", "peak_rss_gib"]))
    nb_total = sum(notebooks.values())
    # the index is built outside every stage record (it is shared by runs over the same passages): when the stages
    # ran one by one, time its build too (`--time-log index=...` around `python -m dgpo_lib.pipeline.run_stage index`)
    extra = [p for p in parts if p["part"] in ("setup", "book") or (stages_before and p["part"] == "index")]
    whole = (total if stages_before else 0) + nb_total + sum(p["wall_s"] or 0 for p in extra)
    peak = max([r["peak_rss_gib"] or 0 for r in rows] + [p["peak_rss_gib"] or 0 for p in parts] + [0])
    what = " + ".join((["stages (run before the notebooks)"] if stages_before else []) + ["notebooks"]
                      + [p["part"] for p in extra])
    print(f"main job ({what}): {whole / 60:.1f} min wall; peak RSS {peak:.2f} GiB "
          f"(targets: {BUDGET_S / 3600:.0f} h, 12 GiB)")
    split = split_by_kind(rows)
    parts_of_run = split_by_part(rows, cfg.eval.ablations)
    print(f"the results table's stages {parts_of_run['table']['work_s'] / 60:.1f} min "
          f"({parts_of_run['table']['stages']} stages); the ablations' own stages "
          f"{parts_of_run['ablations']['work_s'] / 60:.1f} min ({parts_of_run['ablations']['stages']})")
    floor = whole - split["training"]["work_s"] if stages_before else None
    if floor is not None:
        # evaluation size is fixed by the protocol (rows x questions); what is left of the budget is training's
        print(f"evaluation {split['evaluation']['work_s'] / 60:.1f} min ({split['evaluation']['stages']} stages), "
              f"training {split['training']['work_s'] / 60:.1f} min ({split['training']['stages']} stages); "
              f"the main job less its training takes {floor / 60:.1f} min, leaving "
              f"{(BUDGET_S - floor) / 60:.1f} min of the {BUDGET_S / 60:.0f} for all training stages")
    write(f"end_to_end_{a.preset}", {"stages": rows, "total_stage_s": total, "notebooks": notebooks,
                                     "stages_before_notebooks": stages_before, "parts": parts,
                                     "main_job_wall_s": whole or None, "peak_rss_gib": peak or None,
                                     "by_kind": split, "by_part": parts_of_run, "without_training_s": floor,
                                     "budget_s": BUDGET_S}, cfg)


def work_by(rows: list[dict], group, names: tuple[str, ...]) -> dict:
    """{name: stages and their summed work time} for each stage's `group(stage)`."""
    out = {k: {"stages": 0, "work_s": 0.0} for k in names}
    for r in rows:
        k = out[group(r["stage"])]
        k["stages"] += 1
        k["work_s"] += r["work_s"]
    return out


def split_by_kind(rows: list[dict]) -> dict:
    """Work time of the evaluation stages and of the training ones (`report.stage_kind`)."""
    return work_by(rows, stage_kind, ("evaluation", "training"))


def split_by_part(rows: list[dict], ablations: list[str]) -> dict:
    """Work time of the stages the results table needs and of those only the ablations need (each ablation's
    training stage and its evaluations)."""
    own = ablation_stages(ablations)
    return work_by(rows, lambda stage: "ablations" if stage in own else "table", ("table", "ablations"))


def ablation_stages(ablations: list[str]) -> set[str]:
    """The stages only the ablations need: each one's training stage and its evaluations."""
    return {row_stage(v) for v in ablations} | {f"eval_{v}" for v in ablations} | {f"eval_{v}@final" for v in ablations}


def parse_time_log(path: Path) -> tuple[float | None, float | None]:
    """(wall seconds, peak RSS GiB) from GNU time's -v report; the peak is of the largest single process."""
    if not path.exists():
        raise SystemExit(f"{path}: no such time log (run the part under /usr/bin/time -v first)")
    text = path.read_text(errors="replace")
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    wall = None
    if m:
        wall = 0.0
        for x in m.group(1).split(":"):
            wall = wall * 60 + float(x)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return wall, (int(m.group(1)) / 2 ** 20 if m else None)


if __name__ == "__main__":
    main()

"""The cost of a run per stage, before and after: each stage's work time (`records.work_s`) and peak memory in an
earlier committed run (the stage records under results/<preset> at a git commit) and in this config's run root,
preflight's memory estimate beside each new peak, and the machine each ran on. Runs no model.

    .venv/bin/python benchmarks/cost_table.py --preset cpu --before 7020430 [run_root=/path]

Stages the new run has not finished yet are priced at the earlier run's cost of the same stage (or of the stage it
replaces, `--same new=old`) times the median new/old ratio of the finished stages of its kind (training or
evaluation), and marked projected. Writes benchmarks/results/cost_table_<preset>.json.
"""
from __future__ import annotations

import json
import statistics
import subprocess

from common import table, write
from end_to_end import BUDGET_S, ablation_stages
from memory_estimate import estimate_kind

from dgpo_lib.book.benchmarks import machine_words, stage_kind
from dgpo_lib.cli import parse, parser
from dgpo_lib.config import load_config
from dgpo_lib.data.loaders import REPO_ROOT, recorded_path
from dgpo_lib.pipeline import Run, work_s
from dgpo_lib.pipeline.preflight import GIB, Machine, model_checks, stage_memory

# the cpu preset's rows that replaced earlier ones (GKD and DistiLLM now start from the SeqKD student)
SAME = {"kd_gkd_sft": "kd_gkd", "kd_distillm_sft": "kd_distillm", "eval_gkd_sft": "eval_gkd",
        "eval_distillm_sft": "eval_distillm"}


def git_records(commit: str, folder: str) -> tuple[dict[str, dict], dict]:
    """({stage: done.json}, config.json) of the committed results `folder` at `commit`."""
    def show(path):
        return subprocess.run(["git", "show", f"{commit}:{path}"], cwd=REPO_ROOT, capture_output=True, text=True)
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{commit}:{folder}"], cwd=REPO_ROOT,
                           capture_output=True, text=True)
    if names.returncode:
        raise SystemExit(f"cost_table: no {folder} at commit {commit}: {names.stderr.strip()}")
    records = {}
    for name in names.stdout.split():
        r = show(f"{folder}/{name}/done.json")
        if r.returncode == 0:
            records[name] = json.loads(r.stdout)
    cfg = show(f"{folder}/config.json")
    return records, (json.loads(cfg.stdout) if cfg.returncode == 0 else {})


def machine_of(records: dict[str, dict], config: dict) -> str:
    """The machine in words, from the newest record; older records lack the bfloat16 flag, which the run's resolved
    compute dtype then says (`auto` resolves to bfloat16 only where the CPU multiplies it in hardware)."""
    if not records:
        return "no finished stage"
    m = dict(max(records.values(), key=lambda r: r.get("created", ""))["machine"])
    if "cpu_native_bf16" not in m and config.get("models", {}).get("compute_dtype"):
        m["cpu_native_bf16"] = config["models"]["compute_dtype"] == "bfloat16"
    return machine_words(m)


def main():
    ap = parser(__doc__)
    ap.add_argument("--before", required=True, help="git commit whose results/<preset> holds the earlier run")
    ap.add_argument("--same", nargs="*", default=[], metavar="NEW=OLD", help="a new stage priced by an old one")
    a = parse(ap)
    cfg = load_config(a.preset, a.overrides)
    run = Run(cfg, progress=False)
    old, old_cfg = git_records(a.before, f"results/{a.preset}")
    new = run.stage_records()
    same = {**SAME, **dict(s.split("=", 1) for s in a.same)}
    _, shapes = model_checks(cfg, Machine.probe(run.root))
    est = stage_memory(cfg, shapes, 1, host=True)
    rows, ratio, totals = cost_rows(run.stage_names(), old, new, same, est, ablation_stages(cfg.eval.ablations))
    print(table(rows, ["stage", "before_min", "after_min", "projected", "before_peak_gib", "after_peak_gib",
                       "estimate_gib", "estimate_over_measured"]))
    print(f"before: {machine_of(old, old_cfg)}; after: {machine_of(new, cfg.to_dict())}")
    print(f"the results table's stages: {totals['table']['before']} min before, {totals['table']['after']} min after "
          f"(finished + projected; {totals['table']['unpriced']} not priced); all stages {totals['all']['before']} -> "
          f"{totals['all']['after']} min; median after/before: training {ratio['training']}, evaluation "
          f"{ratio['evaluation']}")
    write(f"cost_table_{a.preset}", {"rows": rows, "totals_min": totals, "median_ratio": ratio,
                                     "before": {"commit": a.before, "machine": machine_of(old, old_cfg)},
                                     "after": {"run_root": recorded_path(run.root), "machine": machine_of(new, cfg.to_dict()),
                                               "finished": len(new), "stages": len(rows)},
                                     "budget_min": BUDGET_S / 60}, cfg)


def cost_rows(names: list[str], old: dict, new: dict, same: dict, est: dict, ablations: set[str]):
    """(rows, median new/old ratio per kind, totals) for stages `names`: each stage's work minutes and peak in the
    old records (its own, or those of the stage `same` says it replaces) and the new ones, and preflight's estimate
    `est` (bytes per kind of stage). A stage the new run has not finished is projected at its old cost times the
    median ratio of its kind's finished stages (`projected`); one with no old cost or no finished stage of its kind
    has no figure (`after_min` None) and is counted in the totals' `unpriced`."""
    rows = []
    for stage in names:
        ref = stage if stage in old else same.get(stage)
        o, n = old.get(ref) if ref else None, new.get(stage)
        kind = estimate_kind(stage)
        e = est.get(kind) if kind else None
        rows.append({"stage": stage, "kind": stage_kind(stage), "before_stage": ref if o else None,
                     "before_min": round(work_s(o) / 60, 1) if o else None,
                     "after_min": round(work_s(n) / 60, 1) if n else None, "projected": False,
                     "before_peak_gib": o.get("peak_rss_gib") if o else None,
                     "after_peak_gib": n.get("peak_rss_gib") if n else None,
                     "estimate_gib": round(e / GIB, 2) if e else None,
                     "estimate_over_measured": round(e / GIB / n["peak_rss_gib"], 3) if e and n and
                     n.get("peak_rss_gib") else None})
    ratio = {}
    for k in ("training", "evaluation"):
        rs = [r["after_min"] / r["before_min"] for r in rows if r["kind"] == k and r["after_min"] and r["before_min"]]
        ratio[k] = round(statistics.median(rs), 3) if rs else None
    for r in rows:
        if r["after_min"] is None and r["before_min"] is not None and ratio[r["kind"]] is not None:
            r["after_min"], r["projected"] = round(r["before_min"] * ratio[r["kind"]], 1), True
    totals = {}
    for part in ("table", "all"):
        mine = [r for r in rows if part == "all" or r["stage"] not in ablations]
        totals[part] = {"before": round(sum(r["before_min"] or 0 for r in mine), 1),
                        "after": round(sum(r["after_min"] or 0 for r in mine), 1),
                        "unpriced": sum(r["after_min"] is None for r in mine)}
    return rows, ratio, totals


if __name__ == "__main__":
    main()

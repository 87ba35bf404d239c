"""Does a run reproduce another? Compares the stage outputs of two run folders (or a run folder and the committed
`results/<preset>/`) value for value, and their work time per stage.

    .venv/bin/python benchmarks/compare_runs.py --preset cpu                      # this config's run vs results/cpu
    .venv/bin/python benchmarks/compare_runs.py --preset cpu --a results/cpu --b /elsewhere/runs/cpu-<hash>

Compared, for each stage present in both: evaluation records (every field of every question's record: answer,
EM, response text, queries; then each run's average EM over the benchmarks, the paired-bootstrap 95% interval of
b - a and the searches per question), training metrics (every logged value except timings) and the teacher's cold-start
trajectories (with the share each run's teacher answered right). Timings (`*_s`, `tokens_per_s`) are compared as
work time (`records.work_s`: wall less recorded pauses, times the share of the machine used). A stage whose record has the same creation time in both folders was copied
rather than run again, and is counted apart.
"""
from __future__ import annotations

import json
from pathlib import Path

from common import table, write

from dgpo_lib.cli import parse, parser
from dgpo_lib.config import load_config
from dgpo_lib.data.loaders import REPO_ROOT, recorded_path
from dgpo_lib.io_utils import read_jsonl_tolerant
from dgpo_lib.pipeline import Run, work_s
from dgpo_lib.evaluation.stats import paired_bootstrap


def _untimed(row: dict) -> dict:
    return {k: v for k, v in row.items() if not (k.endswith("_s") or k in ("tokens_per_s", "machine_share"))}


def _same_rows(a: list[dict], b: list[dict]) -> tuple[int, int]:
    """(rows equal in every untimed value, rows compared)."""
    return sum(_untimed(x) == _untimed(y) for x, y in zip(a, b)), max(len(a), len(b))


def _largest_gap(a: list[dict], b: list[dict], field: str = "loss") -> float | None:
    """Largest |a - b| of `field` over the rows logged in both: how far apart two runs that are not identical are
    (e.g. a batch passed in micro-batches sums its loss in another order)."""
    gaps = [abs(x[field] - y[field]) for x, y in zip(a, b)
            if isinstance(x.get(field), (int, float)) and isinstance(y.get(field), (int, float))]
    return max(gaps) if gaps else None


def _by_id(folder: Path) -> dict[str, dict]:
    out = {}
    for f in sorted(folder.glob("records_*.jsonl")):
        for r in read_jsonl_tolerant(f):
            out[f"{r['dataset']}/{r['id']}"] = r
    return out


def _em_per_set(records: dict[str, dict]) -> dict[str, list[float]]:
    """benchmark -> EM of each question, in question-id order (so two runs' lists pair up for the bootstrap)."""
    out: dict[str, list[float]] = {}
    for k in sorted(records):
        out.setdefault(records[k]["dataset"], []).append(float(records[k]["em"]))
    return out


def _summary(folder: Path) -> dict:
    """An evaluation's own summary (evaluate.evaluate): the table's average EM and each benchmark's searches."""
    s = json.loads((folder / "summary.json").read_text())
    return {"em": s["avg_em"], "searches": sum(v["searches"] for v in s["per_set"].values()) / len(s["per_set"])}


def _last_val(metrics_a: Path, metrics_b: Path) -> dict:
    """Validation EM of both runs at the last step both validated (val_metrics.jsonl beside the metrics)."""
    va, vb = ({r["step"]: r for r in read_jsonl_tolerant(m.with_name("val_metrics.jsonl"))}
              if m.with_name("val_metrics.jsonl").exists() else {} for m in (metrics_a, metrics_b))
    both = [s for s in sorted(set(va) & set(vb)) if "val_em" in va[s] and "val_em" in vb[s]]
    if not both:  # no common step, or validation logs no EM (healing logs a held-out loss)
        return {}
    last = both[-1]
    return {"val_step": last, "val_em_a": va[last]["val_em"], "val_em_b": vb[last]["val_em"]}


def compare_stage(a: Path, b: Path) -> dict | None:
    """Equal / compared counts of what the stage wrote, or None when neither folder holds outputs to compare."""
    if list(a.glob("records_*.jsonl")):
        ra, rb = _by_id(a), _by_id(b)
        out = {"what": "eval records", "equal": sum(ra[k] == rb.get(k) for k in ra), "of": len(set(ra) | set(rb))}
        if set(ra) == set(rb):  # the same questions: the table's averages and how sure b - a is
            sa, sb = _summary(a), _summary(b)
            boot = paired_bootstrap(_em_per_set(rb), _em_per_set(ra))
            out.update(em_a=sa["em"], em_b=sb["em"], em_b_minus_a=boot["diff"], ci95_lo=boot["lo"], ci95_hi=boot["hi"],
                       searches_a=sa["searches"], searches_b=sb["searches"])
        return out
    for name, what in (("metrics.jsonl", "training metrics"), ("sft/metrics.jsonl", "training metrics"),
                       ("all_records.jsonl", "teacher trajectories")):
        if (a / name).exists() and (b / name).exists():
            ra, rb = read_jsonl_tolerant(a / name), read_jsonl_tolerant(b / name)
            equal, n = _same_rows(ra, rb)
            out = {"what": what, "equal": equal, "of": n}
            if what == "training metrics":
                out["loss_max_abs_diff"] = _largest_gap(ra, rb)
                out.update(_last_val(a / name, b / name))
            else:  # how often each teacher answered right (its stage record's summary), i.e. how much it kept
                out.update(em_a=record(a)["all"]["em"], em_b=record(b)["all"]["em"])
            return out
    return None


def record(folder: Path) -> dict:
    p = folder / "done.json"
    return json.loads(p.read_text()) if p.exists() else {}


def main():
    ap = parser(__doc__)
    ap.add_argument("--a", type=Path, default=None, help="reference folder (default results/<preset>)")
    ap.add_argument("--b", type=Path, default=None, help="the run to check, a folder of stage folders as results/<preset> "
                    "(default: this config's stages under run_root)")
    ap.add_argument("--name", default=None, help="results file name (default compare_runs_<preset>)")
    a = parse(ap)
    cfg = load_config(a.preset, a.overrides)
    ref = a.a or REPO_ROOT / "results" / a.preset
    run = Run(cfg, progress=False)
    stage_b = (lambda name: a.b / name) if a.b else run.stage_dir
    other = a.b or run.root
    for folder in (ref, a.b or run.root):
        if not folder.is_dir():
            raise SystemExit(f"compare_runs: {folder} is not a folder")
    rows, missing = [], []
    for sa in sorted(p for p in ref.iterdir() if p.is_dir()):
        sb = stage_b(sa.name)
        c = compare_stage(sa, sb) if sb.is_dir() else None
        if c is None:
            missing += [sa.name] if not sb.is_dir() else []
            continue
        ra, rb = record(sa), record(sb)
        wa, wb = work_s(ra), work_s(rb)  # 0.0 for a folder without a record
        # a stage whose record carries the same creation time in both was copied, not run again
        rows.append({"stage": sa.name, **c, "identical": c["equal"] == c["of"],
                     "ran_again": ra.get("created") != rb.get("created"), "commit_b": (rb.get("git_commit") or "")[:8],
                     "work_s_a": wa, "work_s_b": wb, "b_over_a": wb / wa if wa and wb else None})
    if not rows:
        raise SystemExit(f"compare_runs: no stage of {ref} has outputs in {other}")
    print(f"a = {ref}\nb = {other}")
    print(table(rows, ["stage", "what", "equal", "of", "identical", "em_a", "em_b", "ci95_lo", "ci95_hi",
                       "searches_a", "searches_b", "loss_max_abs_diff", "val_step", "val_em_a",
                       "val_em_b", "ran_again", "commit_b", "work_s_a", "work_s_b", "b_over_a"]))
    again = [r for r in rows if r["ran_again"]]
    same = sum(r["identical"] for r in again)
    print(f"{same} of the {len(again)} stages run again are identical; {len(rows) - len(again)} stages were the same "
          f"records in both" + (f"; not in b: {', '.join(missing)}" if missing else ""))
    write(a.name or f"compare_runs_{a.preset}", {"a": recorded_path(ref), "b": recorded_path(other), "stages": rows,
                                                   "ran_again": len(again), "identical_of_ran_again": same,
                                                   "missing_in_b": missing}, cfg)


if __name__ == "__main__":
    main()

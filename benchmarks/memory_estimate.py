"""Preflight's memory estimate per kind of stage beside the peak each finished stage measured (its done.json).

    .venv/bin/python benchmarks/memory_estimate.py --preset cpu [run_root=/path] [--records results/cpu]

Reads the stage records of a run root (default: the config's), or of committed results (`--records`, one folder per
stage); runs no model. A stage's peak is its process's peak resident memory (each stage in its own process, as
`run_stage` runs it, else the peak of every stage before it in the process too). Writes benchmarks/results/memory_estimate_<preset>[_committed].json.
"""
from __future__ import annotations

import json
from pathlib import Path

from common import table, write

from dgpo_lib.cli import parse, parser
from dgpo_lib.config import load_config
from dgpo_lib.data.loaders import recorded_path
from dgpo_lib.pipeline import Run
from dgpo_lib.pipeline.preflight import GIB, Machine, model_checks, stage_memory

KIND = {"student": "student healing", "teacher": "teacher sft", "tgo": "tgo (teacher rollouts)",
        "kd": "kd", "rl": "rl (actor, critic, teacher)", "eval_teacher": "eval (teacher row)"}


def estimate_kind(stage: str) -> str | None:
    """Which of preflight's per-kind estimates a stage is measured against (None: none fits it)."""
    return KIND.get(stage) or (KIND.get(stage.partition("_")[0]) if not stage.startswith("eval_") else None)


def main():
    ap = parser(__doc__)
    ap.add_argument("--records", default=None, help="a folder of committed stage records (results/<preset>)")
    a = parse(ap)
    cfg = load_config(a.preset, a.overrides)
    run = Run(cfg, progress=False)
    _, shapes = model_checks(cfg, Machine.probe(Path(cfg.run_root)))
    est = stage_memory(cfg, shapes, 1, host=True)
    rows = []
    # every stage recorded there (committed results: their own rows, whatever this config's are), else this config's
    stages = sorted(p.name for p in Path(a.records).iterdir() if (p / "done.json").exists()) if a.records \
        else run.stage_names()
    for stage in stages:
        done = Path(a.records) / stage / "done.json" if a.records else run.stage_dir(stage) / "done.json"
        kind = estimate_kind(stage)
        if not done.exists() or kind is None:
            continue
        peak = json.loads(done.read_text()).get("peak_rss_gib")
        e = est.get(kind)
        if peak and e:
            rows.append({"stage": stage, "estimate kind": kind, "estimate_gib": round(e / GIB, 2),
                         "measured_gib": peak, "estimate / measured": round(e / GIB / peak, 3)})
    print(table(rows, ["stage", "estimate kind", "estimate_gib", "measured_gib", "estimate / measured"])
          if rows else "no finished stage with a peak")
    write(f"memory_estimate_{a.preset}" + ("_committed" if a.records else ""), {"rows": rows, "estimates_gib": {k: round(v / GIB, 2) for k, v in est.items()},
                                         "records": a.records or recorded_path(run.root)}, cfg)


if __name__ == "__main__":
    main()

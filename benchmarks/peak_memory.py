"""Peak memory of the teacher's SFT step, the stage with the largest activations (30 layers, oracle trajectories up
to the context limit), at each micro-batch size: every setting runs in a fresh process (the peak RSS of a process
only grows), on the batch of the longest oracle trajectories of the run's teacher stage.

    .venv/bin/python benchmarks/peak_memory.py [--preset cpu] [--micro 8 4 2]
"""
from __future__ import annotations

import argparse
import copy
from dataclasses import replace
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from common import table, write

from dgpo_lib.cli import parse, parser
from dgpo_lib.config import load_config
from dgpo_lib.pipeline import Run


def one_setting(preset: str, micro: int, overrides: list[str]) -> dict:
    """Two SFT steps of the teacher's base model on the longest oracle batch; this process's peak RSS."""
    from dgpo_lib.methods import METHODS
    from dgpo_lib.train.budget import teacher_sft_budget
    from dgpo_lib.train.kd import train_kd
    from dgpo_lib.models.loading import load_role
    from dgpo_lib.train.trajectories import load_seqs

    cfg = load_config(preset, overrides)
    run = Run(cfg, progress=False)
    run.stage("teacher")
    seqs = sorted(load_seqs(run.stage_dir("teacher") / "oracle"), key=lambda s: -s.length)[: cfg.teacher.sft_batch]
    c = copy.deepcopy(cfg)
    c.train.save_every = 10 ** 6  # no checkpoint inside the measured steps
    budget = replace(teacher_sft_budget(cfg, len(seqs)), steps=2, lr=1e-6, batch_size=len(seqs), micro_batch=micro)
    base, tok = load_role(cfg, "teacher")
    with tempfile.TemporaryDirectory() as d:
        rows = train_kd(METHODS["seqkd"].kd, base, tok, None, seqs, c, budget, Path(d), progress=False)
    return {"micro_batch": micro, "batch": len(seqs), "longest_tokens": seqs[0].length,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
            "s_per_step": rows[-1]["step_s"]}


def main():
    ap = parser(__doc__)
    ap.add_argument("--micro", type=int, nargs="*", default=[8, 4, 2])
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child process's setting
    a = parse(ap)
    if a.one is not None:
        print(json.dumps(one_setting(a.preset, a.one, a.overrides)))
        return
    rows = []
    for m in a.micro:
        out = subprocess.run([sys.executable, __file__, "--preset", a.preset, "--one", str(m), *a.overrides],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(table(rows[-1:], list(rows[-1])), flush=True)
    print(table(rows, list(rows[0])))
    cfg = load_config(a.preset, a.overrides)
    write(f"peak_memory_{a.preset}", {"rows": rows, "what": "teacher SFT step on its longest oracle batch",
                                      "preset_micro_batch": cfg.teacher.sft_micro_batch or cfg.train.micro_batch}, cfg)


if __name__ == "__main__":
    main()

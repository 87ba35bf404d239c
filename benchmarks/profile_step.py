"""Where a step's time goes, by operator: two KD steps (teacher forward, student forward and backward, forward KL,
AdamW), one DGPO step (rollouts, the actor's, teacher's and critic's forward passes, the actor's and critic's
updates), also by phase, and the student's continuous generator (a 32-row prefill, then decode steps), under
torch.profiler. Time outside every operator is Python and framework overhead.

    .venv/bin/python benchmarks/profile_step.py [--preset cpu] [--top 12]
"""
from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import profile

from common import table, write
from decode_step import continuous_step
from training import oracle_seqs

from dgpo_lib.cli import parse, parser
from dgpo_lib.methods import METHODS
from dgpo_lib.train.budget import kd_budget
from dgpo_lib.train import kd, rl
from dgpo_lib.train.budget import rl_budget
from dgpo_lib.config import load_config
from dgpo_lib.models.loading import load_model
from dgpo_lib.pipeline import Run


def by_operator(prof, wall_s: float, top: int) -> dict:
    """The `top` operators by self time, each with its share of the wall time, and the time in no operator."""
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    in_ops = sum(e.self_cpu_time_total for e in events) / 1e6
    rows = [{"operator": e.key, "calls": e.count, "self_s": e.self_cpu_time_total / 1e6,
             "share_of_wall": e.self_cpu_time_total / 1e6 / wall_s} for e in events[:top]]
    return {"wall_s": wall_s, "in_operators_s": in_ops, "outside_operators_share": max(0.0, 1 - in_ops / wall_s),
            "operators": rows}


def rl_step(run: Run, cfg, tok, teacher, top: int) -> dict:
    """One DGPO step of the preset's size (rl.prompts_per_step sampled rollouts, then the update) from the KD-free
    student, after one untimed step: operators, and the step's phases as its metrics record them."""
    c = copy.deepcopy(cfg)
    c.rl.steps, c.train.save_every = 1, 10 ** 6
    make = lambda actor, qs: run.resources.env(actor, tok, greedy=False).run(qs)  # noqa: E731
    qs = run.resources.train_questions()
    with tempfile.TemporaryDirectory() as d:
        actor, _ = load_model(run.student(), cfg.models.dtype)
        rl.train_rl(METHODS["dgpo"].rl, actor, tok, run.student(), teacher, qs, make, c, rl_budget(c),
                    Path(d) / "warm", progress=False)
        actor, _ = load_model(run.student(), cfg.models.dtype)
        t0 = time.perf_counter()
        with profile() as prof:
            rows = rl.train_rl(METHODS["dgpo"].rl, actor, tok, run.student(), teacher, qs, make, c, rl_budget(c),
                               Path(d) / "timed", progress=False)
        wall = time.perf_counter() - t0
    r = rows[-1]
    phases = [{"phase": k[len("phase_"):-2], "s": v, "share_of_step": v / r["step_s"]}
              for k, v in r.items() if k.startswith("phase_")]
    return {**by_operator(prof, wall, top), "phases": phases, "step_s": r["step_s"],
            "sequence_tokens": r["sequence_tokens"], "response_tokens_per_rollout": r["response_tokens"],
            "rollouts": r["rollouts"]}


def main():
    ap = parser(__doc__)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--decode-steps", type=int, default=16)
    a = parse(ap)
    cfg = load_config(a.preset, a.overrides)
    run = Run(cfg, progress=False)
    teacher, tok = load_model(run.stage("teacher"), cfg.models.dtype)
    seqs = oracle_seqs(run, tok, cfg.kd.batch_size)
    out = {}
    c = copy.deepcopy(cfg)
    c.kd.steps, c.train.save_every = 2, 10 ** 6
    student, _ = load_model(run.stage("student"), cfg.models.dtype)
    with tempfile.TemporaryDirectory() as d:
        kd.train_kd(METHODS["kd"].kd, student, tok, teacher, seqs, c, kd_budget(c), Path(d) / "warm", progress=False)  # allocations warm
        t0 = time.perf_counter()
        with profile() as prof:
            kd.train_kd(METHODS["kd"].kd, student, tok, teacher, seqs, c, kd_budget(c), Path(d) / "timed", progress=False)
        out["kd_steps"] = by_operator(prof, time.perf_counter() - t0, a.top)
    out["rl_step"] = rl_step(run, cfg, tok, teacher, a.top)
    ids = torch.randint(100, teacher.config.vocab_size - 100, (32, 300), generator=torch.Generator().manual_seed(0))
    student.eval()
    continuous_step(student, tok, ids, 4)
    t0 = time.perf_counter()
    with profile() as prof:
        continuous_step(student, tok, ids, a.decode_steps)
    out["student_decode"] = by_operator(prof, time.perf_counter() - t0, a.top)
    for name, r in out.items():
        print(f"{name}: {r['wall_s']:.2f} s wall, {r['outside_operators_share']:.1%} outside operators")
        print(table(r["operators"], ["operator", "calls", "self_s", "share_of_wall"]))
        if "phases" in r:
            print(table(r["phases"], ["phase", "s", "share_of_step"]))
    # the overrides and dtype say which models ran (stand-in stages, float32 on a CPU without AVX512-BF16)
    write(f"profile_{a.preset}", {**out, "threads": torch.get_num_threads(), "overrides": a.overrides,
                                  "compute_dtype": cfg.models.compute_dtype}, cfg)


if __name__ == "__main__":
    main()

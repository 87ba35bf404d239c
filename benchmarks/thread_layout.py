"""Two stages side by side with one thread each, against one stage with every core: which uses the cores better.

A training step of the teacher's base model (forward and backward of a micro-batch of 4 x 600 random tokens,
logits at the last 100 positions, as an SFT step keeps them) timed three ways, each in fresh processes: one
process with all the cores, one process with one thread, and one single-threaded process per core at once.
Each child times its steps only once every child has loaded its model and warmed up (a barrier on files), so
the side-by-side steps overlap. The throughput ratio says whether independent stages (the teacher and the student; KD baselines; RL rows)
should run one at a time or one per core.

    .venv/bin/python benchmarks/thread_layout.py [--preset cpu] [--steps 3] [key=value ...]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import table, write

from dgpo_lib.cli import parse, parser
from dgpo_lib.config import load_config


def one_process(cfg, steps: int, threads: int, barrier: Path, n: int) -> float:
    """Seconds per training step in this process with `threads` threads (as a stage sets them, `threads=`), timed
    from the moment all `n` children are ready."""
    import torch

    from dgpo_lib.models.loading import load_role
    from dgpo_lib.models.precision import amp, resolve_dtype, set_compute_dtype

    torch.set_num_threads(threads)
    set_compute_dtype(resolve_dtype(cfg.models.compute_dtype, "cpu"))
    model, _ = load_role(cfg, "teacher")
    model.train()
    ids = torch.randint(0, model.config.vocab_size, (4, 600))
    keep = torch.arange(500, 600)

    def step():
        with amp("cpu"):
            logits = model(input_ids=ids, logits_to_keep=keep).logits
        logits.float().logsumexp(-1).mean().backward()

    step()  # warm-up
    (barrier / f"ready-{os.getpid()}").touch()
    while len(list(barrier.glob("ready-*"))) < n:
        time.sleep(0.1)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps


def launch(a, threads: int, barrier: Path, n: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, __file__, "--preset", a.preset, "--steps", str(a.steps), "--one",
                             f"{threads},{barrier},{n}", *a.overrides], env=env, stdout=subprocess.PIPE, text=True)


def together(a, threads: list[int]) -> list[float]:
    """Seconds per step of one child per entry of `threads` (its thread count), all timed at once."""
    with tempfile.TemporaryDirectory() as d:
        return seconds([launch(a, t, Path(d), len(threads)) for t in threads])


def seconds(procs) -> list[float]:
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"thread_layout: a child failed (exit {p.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1])["s_per_step"])
    return out


def main():
    ap = parser(__doc__)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child's run: threads,barrier folder,children
    a = parse(ap)
    cfg = load_config(a.preset, a.overrides)
    if a.one:
        threads, barrier, n = a.one.split(",")
        print(json.dumps({"s_per_step": one_process(cfg, a.steps, int(threads), Path(barrier), int(n))}))
        return
    cores = len(os.sched_getaffinity(0))
    all_cores = together(a, [cores])[0]
    alone = together(a, [1])[0]
    side_by_side = together(a, [1] * cores)
    rows = [{"layout": f"one process, {cores} threads", "s_per_step": all_cores, "steps_per_s": 1 / all_cores},
            {"layout": "one process, 1 thread", "s_per_step": alone, "steps_per_s": 1 / alone},
            {"layout": f"{cores} processes, 1 thread each, at once", "s_per_step": max(side_by_side),
             "steps_per_s": sum(1 / s for s in side_by_side)}]
    print(table(rows, ["layout", "s_per_step", "steps_per_s"]))
    ratio = rows[2]["steps_per_s"] / rows[0]["steps_per_s"]
    print(f"one thread per core does {ratio:.2f}x the work of one process on every core")
    write(f"thread_layout_{a.preset}", {"rows": rows, "side_by_side_over_all_cores": ratio, "cores": cores,
                                         "what": "teacher base model, forward + backward of 4 x 600 tokens"},
          cfg)


if __name__ == "__main__":
    main()

"""Drawing one token per row at temperature 1: the rollouts' inverse-CDF sampler (`generation.kv.sample_next`)
against `torch.multinomial`, which it replaced, on next-token probabilities of the preset's vocabulary size.

    .venv/bin/python benchmarks/sampling.py [--preset cpu] [--rows 32] [--reps 50]
"""
from __future__ import annotations

import argparse
import time

import torch

from common import table, write

from dgpo_lib.config import load_config
from dgpo_lib.generation.kv import sample_next
from dgpo_lib.pipeline import Run


def ms_per_call(fn, reps: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--rows", type=int, default=32, help="decode slots (rollout.batch_size in the cpu preset)")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_intermixed_args()
    cfg = load_config(a.preset, a.overrides)
    from transformers import AutoConfig
    vocab = AutoConfig.from_pretrained(Run(cfg, progress=False).model_path("student")).vocab_size  # logits' width
    torch.manual_seed(cfg.seed)
    logits = torch.randn(a.rows, vocab) * 3  # a peaked next-token distribution; speed does not depend on its shape
    rows = [{"sampler": "torch.multinomial (before)",
             "ms": ms_per_call(lambda: torch.multinomial(torch.softmax(logits, -1), 1), a.reps)},
            {"sampler": "inverse CDF (sample_next)", "ms": ms_per_call(lambda: sample_next(logits, 1.0, 1.0), a.reps)}]
    ratio = rows[0]["ms"] / rows[1]["ms"]
    print(table(rows, ["sampler", "ms"]))
    print(f"{a.rows} rows x {vocab} tokens: inverse CDF is {ratio:.2f}x faster")
    write(f"sampling_{a.preset}", {"rows": a.rows, "vocab": vocab, "threads": torch.get_num_threads(),
                                   "results": rows, "speedup": ratio}, cfg)


if __name__ == "__main__":
    main()

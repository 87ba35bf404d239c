"""Drawing one token per row at temperature 1: the rollouts' inverse-CDF sampler (`generation.kv.sample_next`, a
two-level cumulative sum) against its one-level form (one float64 cumsum over the vocabulary, what it ran before)
and `torch.multinomial` (what it replaced first), on next-token probabilities of the preset's vocabulary size.

    .venv/bin/python benchmarks/sampling.py [--preset cpu] [--rows 32] [--reps 50]
"""
from __future__ import annotations

import time

import torch

from common import table, write

from dgpo_lib.cli import parse, parser
from dgpo_lib.config import load_config
from dgpo_lib.generation.kv import CDF_BLOCK, inverse_cdf_sample, sample_next
from dgpo_lib.pipeline import Run


def ms_per_call(fn, reps: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1e3


def main():
    ap = parser(__doc__)
    ap.add_argument("--rows", type=int, default=32, help="decode slots (rollout.batch_size in the cpu preset)")
    ap.add_argument("--reps", type=int, default=50)
    a = parse(ap)
    cfg = load_config(a.preset, a.overrides)
    from transformers import AutoConfig
    vocab = AutoConfig.from_pretrained(Run(cfg, progress=False).model_path("student")).vocab_size  # logits' width
    torch.manual_seed(cfg.seed)
    logits = torch.randn(a.rows, vocab) * 3  # a peaked next-token distribution; speed does not depend on its shape
    probs = torch.softmax(logits, -1)
    rows = [{"sampler": "torch.multinomial",
             "ms": ms_per_call(lambda: torch.multinomial(torch.softmax(logits, -1), 1), a.reps)},
            # one block as wide as the vocabulary: the single float64 cumsum the sampler used before its two levels
            {"sampler": "inverse CDF, one cumsum over the vocabulary",
             "ms": ms_per_call(lambda: inverse_cdf_sample(torch.softmax(logits, -1), block=vocab), a.reps)},
            {"sampler": f"inverse CDF, blocks of {CDF_BLOCK} (sample_next)",
             "ms": ms_per_call(lambda: sample_next(logits, 1.0, 1.0), a.reps)}]
    torch.manual_seed(cfg.seed)
    one = inverse_cdf_sample(probs, block=vocab)
    torch.manual_seed(cfg.seed)
    same = bool(torch.equal(one, inverse_cdf_sample(probs)))
    for r in rows:
        r["speedup_vs_multinomial"] = rows[0]["ms"] / r["ms"]
    print(table(rows, ["sampler", "ms", "speedup_vs_multinomial"]))
    print(f"{a.rows} rows x {vocab} tokens: blocks vs one cumsum {rows[1]['ms'] / rows[2]['ms']:.1f}x faster, "
          f"vs torch.multinomial {rows[0]['ms'] / rows[2]['ms']:.1f}x; same draws as one cumsum: {same}")
    write(f"sampling_{a.preset}", {"rows": a.rows, "vocab": vocab, "threads": torch.get_num_threads(),
                                   "results": rows, "speedup": rows[1]["ms"] / rows[2]["ms"],
                                   "speedup_vs_multinomial": rows[0]["ms"] / rows[2]["ms"],
                                   "same_draws_as_one_cumsum": same}, cfg)


if __name__ == "__main__":
    main()

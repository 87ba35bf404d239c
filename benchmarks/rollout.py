"""Rollout throughput: batched multi-turn Search-R1 rollouts vs a one-question-at-a-time loop, vs this machine's
limit, with the share of time spent in generation, retrieval and (re-)tokenisation.

    .venv/bin/python benchmarks/rollout.py [--preset cpu] [--questions 64] [--batch 32] [--single 8]
"""
from __future__ import annotations

import argparse
import time

from common import decode_limit, matmul_flops, memory_bandwidth, table, write

from dgpo_lib.config import load_config
from dgpo_lib.models import count_parameters
from dgpo_lib.pipeline import Run
from dgpo_lib.precision import compute_dtype


def measure(run: Run, row: str, questions, batch: int) -> dict:
    model, tok = run.load(row)
    env = run.env(model, tok, greedy=False)
    t0 = time.perf_counter()
    for s in range(0, len(questions), batch):
        env.run(questions[s:s + batch])
    wall = time.perf_counter() - t0
    g = env.gen.stats
    gen_tokens = g["generated_tokens"]
    return {"model": row, "batch": batch, "questions": len(questions), "wall_s": wall,
            "generated_tokens": gen_tokens, "tokens_per_s": gen_tokens / wall,
            "share_generate": g["generate_s"] / wall, "share_retrieve": env.stats["retrieve_s"] / wall,
            "share_tokenize": env.stats["tokenize_s"] / wall, "searches": env.stats["searches"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--single", type=int, default=8, help="questions for the one-at-a-time loop")
    ap.add_argument("--rows", nargs="*", default=["student", "teacher"])
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_intermixed_args()
    cfg = load_config(a.preset, a.overrides)
    run = Run(cfg, progress=False)
    qs = run.train_questions()[: a.questions]
    run.retriever()
    flops = matmul_flops(__import__("torch").bfloat16 if compute_dtype() == "bfloat16" else __import__("torch").float32)
    bw = memory_bandwidth()
    rows = []
    for row in a.rows:
        batched = measure(run, row, qs, a.batch)
        single = measure(run, row, qs[: a.single], 1)
        n = count_parameters(run.load(row)[0])
        limit = decode_limit(n, a.batch, flops, bw, 2 if compute_dtype() == "bfloat16" else 4)
        rows.append({**batched, "single_tokens_per_s": single["tokens_per_s"],
                     "speedup_vs_single": batched["tokens_per_s"] / single["tokens_per_s"],
                     "params": n, "limit_tokens_per_s": limit, "share_of_limit": batched["tokens_per_s"] / limit})
    print(table(rows, ["model", "batch", "tokens_per_s", "single_tokens_per_s", "speedup_vs_single",
                       "limit_tokens_per_s", "share_of_limit", "share_generate", "share_retrieve", "share_tokenize"]))
    write(f"rollout_{a.preset}", {"rows": rows, "matmul_flops": flops, "memory_bandwidth": bw,
                                  "compute_dtype": compute_dtype()}, cfg)


if __name__ == "__main__":
    main()

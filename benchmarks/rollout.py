"""Rollout throughput: batched multi-turn Search-R1 rollouts (KV cache kept across turns, and HF generate) vs a
one-question-at-a-time loop, vs this machine's limit, with the share of time in generation, retrieval and
tokenisation, the share outside the model's forward passes, and prefill's linear-layer FLOP/s as a share of the
measured GEMM rate.

    .venv/bin/python benchmarks/rollout.py [--preset cpu] [--questions 64] [--batch 32] [--single 8]
"""
from __future__ import annotations

import time

import torch

from common import decode_limit, matmul_flops, memory_bandwidth, table, write
from training import linear_weights

from dgpo_lib.cli import parse, parser
from dgpo_lib.config import load_config
from dgpo_lib.models.loading import count_parameters
from dgpo_lib.pipeline import Run
from dgpo_lib.generation.kv import KVGenerator
from dgpo_lib.models.precision import compute_dtype
from dgpo_lib.generation.continuous import ContinuousGenerator
from dgpo_lib.generation.hf import HFGenerator
from dgpo_lib.env.rollout import run_batched


def measure(run: Run, row: str, questions, batch: int, generator: str) -> dict:
    model, tok = run.load(row)
    env = run.resources.env(model, tok, greedy=False)
    if generator == "hf":  # plain transformers: undo the KV generator's decode-attention routing
        model.set_attn_implementation("sdpa")
    env.gen = {"hf": HFGenerator, "kv": KVGenerator, "continuous": ContinuousGenerator}[generator](model, tok)
    t0 = time.perf_counter()
    run_batched(env, questions, batch, progress=False)  # continuous: `batch` slots, refilled as trajectories end
    wall = time.perf_counter() - t0
    g = env.gen.stats
    gen_tokens = g["generated_tokens"]
    return {"model": row, "generator": generator, "batch": batch, "questions": len(questions), "wall_s": wall,
            "generated_tokens": gen_tokens, "tokens_per_s": gen_tokens / wall, "questions_per_s": len(questions) / wall,
            "share_generate": g["generate_s"] / wall, "share_retrieve": env.stats["retrieve_s"] / wall,
            "share_tokenize": env.stats["tokenize_s"] / wall, "searches": env.stats["searches"],
            "prefill_tokens": g.get("prefill_tokens"), "decode_steps": g.get("decode_steps"),
            "decode_slots": g.get("decode_slots"), "prefill_s": g.get("prefill_s"), "decode_s": g.get("decode_s")}


def main():
    ap = parser(__doc__)
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--single", type=int, default=8, help="questions for the one-at-a-time loop")
    ap.add_argument("--rows", nargs="*", default=["student", "teacher"])
    ap.add_argument("--generators", nargs="*", default=["continuous", "kv", "hf"])
    a = parse(ap)
    cfg = load_config(a.preset, a.overrides)
    run = Run(cfg, progress=False)
    qs = run.resources.train_questions()[: a.questions]
    run.resources.retriever()
    bf16 = compute_dtype() == "bfloat16"
    flops = matmul_flops(torch.bfloat16 if bf16 else torch.float32)
    bw = memory_bandwidth()
    rows = []
    for row in a.rows:
        run.stage(row)  # the trained student or teacher (trains it if this run has not)
        n = count_parameters(run.load(row)[0])
        limit = decode_limit(n, a.batch, flops, bw, 2 if bf16 else 4)
        # sampled rollouts (T=1, as in RL), so every variant sees the same kind of text but not the same tokens:
        # compare questions/s and generated tokens/s
        single = measure(run, row, qs[: a.single], 1, "hf")
        weights = linear_weights(run.load(row)[0])
        for gen in a.generators:
            r = measure(run, row, qs, a.batch, gen)
            rows.append({**r, "params": n, "limit_tokens_per_s": limit, "share_of_limit": r["tokens_per_s"] / limit,
                         "speedup_vs_single": r["questions_per_s"] / single["questions_per_s"]})
            if r.get("prefill_s"):  # generators that time their forward passes (kv, continuous)
                rows[-1]["outside_forward_share"] = 1 - (r["prefill_s"] + r["decode_s"]) / r["wall_s"]
                rows[-1]["prefill_share_of_gemm"] = 2 * weights * r["prefill_tokens"] / r["prefill_s"] / flops
        rows.append({**single, "params": n, "limit_tokens_per_s": decode_limit(n, 1, flops, bw, 2 if bf16 else 4),
                     "speedup_vs_single": 1.0})
    print(table(rows, ["model", "generator", "batch", "questions_per_s", "tokens_per_s", "speedup_vs_single",
                       "limit_tokens_per_s", "share_of_limit", "share_generate", "share_retrieve", "share_tokenize",
                       "outside_forward_share", "prefill_share_of_gemm"]))
    write(f"rollout_{a.preset}", {"rows": rows, "matmul_flops": flops, "memory_bandwidth": bw,
                                  "compute_dtype": compute_dtype(), "note": "one-at-a-time = HF generate, batch 1"},
          cfg)


if __name__ == "__main__":
    main()

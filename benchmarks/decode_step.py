"""Decode step of the project's continuous generator against bare transformers loops on the same model, rows and
context, in one run: a `StaticCache` loop (the peer; no compile) and a `DynamicCache` loop, bf16, random context.

The continuous generator's step is `_Episodes._forward` over every slot, as in a rollout (its ragged KV buffer,
4-D mask and grouped-query decode attention); the bare loops are what a user of transformers would write.

    .venv/bin/python benchmarks/decode_step.py [--preset cpu] [--rows 32] [--context 300] [--steps 32]
"""
from __future__ import annotations

import time

import torch

from common import table, write

from dgpo_lib.cli import parse, parser
from dgpo_lib.config import load_config
from dgpo_lib.generation.continuous import ContinuousGenerator, _Episodes
from dgpo_lib.models.loading import load_model
from dgpo_lib.pipeline import Run
from dgpo_lib.models.precision import amp
from dgpo_lib.env.rollout import RolloutSettings


def bare_loop(path: str, ids: torch.Tensor, steps: int, static: bool) -> float:
    """ms per decode step of a plain transformers loop, model loaded in bf16."""
    from transformers import AutoModelForCausalLM, DynamicCache, StaticCache

    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
    B, P = ids.shape
    cache = (StaticCache(config=m.config, max_batch_size=B, max_cache_len=P + steps + 8, dtype=torch.bfloat16)
             if static else DynamicCache(config=m.config))
    with torch.inference_mode():
        out = m(input_ids=ids, past_key_values=cache, use_cache=True, cache_position=torch.arange(P))
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        times = []
        for i in range(steps):
            t0 = time.perf_counter()
            out = m(input_ids=tok, past_key_values=cache, use_cache=True, cache_position=torch.tensor([P + i]))
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            times.append(time.perf_counter() - t0)
    return 1000 * sum(times[2:]) / len(times[2:])  # the first steps warm allocations up


class _Prompts:
    """What `_Episodes` reads of an environment: settings and each question's prompt ids."""

    def __init__(self, ids: torch.Tensor, max_total_tokens: int):
        self.rows = ids.tolist()
        self.s = RolloutSettings(max_total_tokens=max_total_tokens)

    def prompt_ids(self, q: int) -> list[int]:
        return self.rows[q]


def continuous_step(model, tok, ids: torch.Tensor, steps: int) -> float:
    """ms per decode step of the project's continuous generator (every slot decoding, as in a full batch)."""
    gen = ContinuousGenerator(model, tok)
    B, P = ids.shape
    ep = _Episodes(gen, _Prompts(ids, P + steps + 8), list(range(B)), B, None)
    with torch.no_grad(), amp("cpu"):
        for c in range(0, B, 8):  # prefill in groups of 8, as a rollout does
            rows = list(range(c, min(c + 8, B)))
            ep._forward(rows, [ep.trajs[b].prompt_ids for b in rows], all_slots=False)
        nxt = [[int(ids[b, -1])] for b in range(B)]
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            logits = ep._forward(list(range(B)), nxt, all_slots=True)
            nxt = [[t] for t in logits.argmax(-1).tolist()]
            times.append(time.perf_counter() - t0)
    return 1000 * sum(times[2:]) / len(times[2:])


def main():
    ap = parser(__doc__)
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--context", type=int, default=300)
    ap.add_argument("--steps", type=int, default=32)
    a = parse(ap)
    cfg = load_config(a.preset, a.overrides)
    run = Run(cfg, progress=False)
    rows = []
    for role in ("student", "teacher"):
        path = run.stage(role)
        model, tok = load_model(path, cfg.models.dtype)
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(100, model.config.vocab_size - 100, (a.rows, a.context), generator=g)
        r = {"model": role, "layers": model.config.num_hidden_layers, "rows": a.rows, "context": a.context,
             "continuous_ms": continuous_step(model, tok, ids, a.steps),
             "static_cache_ms": bare_loop(path, ids, a.steps, static=True),
             "dynamic_cache_ms": bare_loop(path, ids, a.steps, static=False)}
        r["continuous_over_static"] = r["continuous_ms"] / r["static_cache_ms"]
        r["dynamic_over_static"] = r["dynamic_cache_ms"] / r["static_cache_ms"]
        rows.append(r)
        print(table([r], list(r)), flush=True)
    print(table(rows, list(rows[0])))
    write(f"decode_step_{a.preset}", {"rows": rows, "threads": torch.get_num_threads(), "steps": a.steps}, cfg)


if __name__ == "__main__":
    main()

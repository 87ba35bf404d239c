"""The generators a rollout can use, and `make_generator`, the one place that picks one (`rollout.generator`), so
the environment (`rollout.py`) and the backends need not know each other:

- `hf`: `model.generate` over the whole context every turn (the reference the others are tested against);
- `kv`: a batch in lock step, each trajectory's KV cache kept across turns;
- `continuous`: continuous batching of whole episodes, a slot refilled as soon as its trajectory ends;
- `vllm`: vLLM on a GPU, for frozen models (optional)."""
from __future__ import annotations

import logging

from dgpo_lib.generation.hf import HFGenerator

log = logging.getLogger(__name__)


def make_generator(model, tokenizer, cfg, model_path: str | None = None):
    """The configured generator. `kv` keeps each trajectory's KV cache across turns (generation/kv.py); `hf`
    re-encodes the context with `model.generate` every turn; `vllm` (frozen models given by `model_path`:
    evaluation, teacher rollouts) runs vLLM when it and a GPU are there, else falls back to `continuous`."""
    kind = cfg.rollout.generator
    if kind == "vllm":
        from dgpo_lib.generation.vllm import VLLMGenerator, vllm_available
        if model_path is not None and vllm_available():
            return VLLMGenerator(model_path, tokenizer, max_model_len=cfg.rollout.max_total_tokens, seed=cfg.seed)
        log.info("rollout.generator=vllm: %s; using continuous batching",
                 "vLLM or a GPU is missing" if model_path is not None else "the policy is being trained")
        kind = "continuous"
    if kind == "continuous":
        from dgpo_lib.generation.continuous import ContinuousGenerator
        return ContinuousGenerator(model, tokenizer)
    if kind == "kv":
        from dgpo_lib.generation.kv import KVGenerator
        return KVGenerator(model, tokenizer)
    if kind == "hf":
        return HFGenerator(model, tokenizer)
    raise ValueError(f"rollout.generator must be 'continuous', 'kv', 'hf' or 'vllm', got {cfg.rollout.generator!r}")

"""Which generator a rollout uses (`rollout.generator`): one place that knows every backend, so the environment
(`rollout.py`) and the backends (`kv_generation.py`, `continuous.py`, `vllm_generation.py`) need not know each other."""
from __future__ import annotations

import logging

from .rollout import HFGenerator

log = logging.getLogger(__name__)


def make_generator(model, tokenizer, cfg, model_path: str | None = None):
    """The configured generator. `kv` keeps each trajectory's KV cache across turns (kv_generation.py); `hf`
    re-encodes the context with `model.generate` every turn; `vllm` (frozen models given by `model_path`:
    evaluation, teacher rollouts) runs vLLM when it and a GPU are there, else falls back to `kv`."""
    kind = cfg.rollout.generator
    if kind == "vllm":
        from .vllm_generation import VLLMGenerator, vllm_available
        if model_path is not None and vllm_available():
            return VLLMGenerator(model_path, tokenizer, max_model_len=cfg.rollout.max_total_tokens, seed=cfg.seed)
        log.info("rollout.generator=vllm: %s; using continuous batching",
                 "vLLM or a GPU is missing" if model_path is not None else "the policy is being trained")
        kind = "continuous"
    if kind == "continuous":
        from .continuous import ContinuousGenerator
        return ContinuousGenerator(model, tokenizer)
    if kind == "kv":
        from .kv_generation import KVGenerator
        return KVGenerator(model, tokenizer)
    if kind == "hf":
        return HFGenerator(model, tokenizer)
    raise ValueError(f"rollout.generator must be 'continuous', 'kv', 'hf' or 'vllm', got {cfg.rollout.generator!r}")

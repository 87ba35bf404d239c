"""Optional vLLM generation for frozen models (evaluation and teacher rollouts at paper scale).

vLLM is not a dependency (it needs a CUDA GPU); `rollout.generator: vllm` uses it when it is installed and falls
back to the KV-cached generator otherwise, with a log line saying so. Its automatic prefix caching plays the role
of `generation.kv`: every turn of a trajectory extends the previous context, so only new tokens are encoded.
The RL actor changes every step, so its rollouts stay on the in-process generator (no weight sync to vLLM).
"""
from __future__ import annotations

import importlib.util
import logging
import time
from typing import Sequence

from dgpo_lib.env.prompts import STOP_STRINGS
from dgpo_lib.generation.hf import cut_at_stop

log = logging.getLogger(__name__)


def vllm_available() -> bool:
    import torch
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


class VLLMGenerator:
    """`generate(contexts, max_new_tokens, temperature, top_p)` over token-id contexts, like `HFGenerator`."""

    def __init__(self, model_path: str, tokenizer, dtype: str = "bfloat16", gpu_memory_utilization: float = 0.5,
                 max_model_len: int = 4096, seed: int = 0, stops: Sequence[str] = STOP_STRINGS):
        from vllm import LLM

        self.tokenizer, self.stops = tokenizer, tuple(stops)
        self.eos_id = tokenizer.eos_token_id
        self.llm = LLM(model=model_path, dtype=dtype, enable_prefix_caching=True, seed=seed,
                       gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)
        self.stats = {"generate_s": 0.0, "generated_tokens": 0, "calls": 0}

    def generate(self, contexts: list[list[int]], max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0) -> list[list[int]]:
        from vllm import SamplingParams


        if max_new_tokens <= 0:
            return [[] for _ in contexts]
        t0 = time.perf_counter()
        params = SamplingParams(max_tokens=max_new_tokens, temperature=temperature,
                                top_p=top_p if temperature > 0 else 1.0, stop=list(self.stops),
                                include_stop_str_in_output=True, skip_special_tokens=False)
        outs = self.llm.generate([{"prompt_token_ids": c} for c in contexts], params, use_tqdm=False)
        # vLLM stops on text; the same binary-search cut as HFGenerator keeps the token boundary identical
        res = [cut_at_stop(list(o.outputs[0].token_ids), self.tokenizer, self.stops, self.eos_id) for o in outs]
        self.stats["generate_s"] += time.perf_counter() - t0
        self.stats["generated_tokens"] += sum(len(r) for r in res)
        self.stats["calls"] += 1
        return res

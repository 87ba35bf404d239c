"""The plain generator: `model.generate` over the whole context at every turn, and the token-exact cut at a stop
string (vLLM's outputs are cut the same way). The reference the faster generators are tested against: greedy
outputs equal token for token."""
from __future__ import annotations

import time
from typing import Sequence

import torch

from dgpo_lib.env.prompts import STOP_STRINGS
from dgpo_lib.models.precision import amp


def cut_at_stop(ids: Sequence[int], tokenizer, stops: Sequence[str] = STOP_STRINGS,
                eos_id: int | None = None) -> list[int]:
    """Keep `ids` up to and including the token that completes the first stop string, or the first EOS.
    Binary search on the decoded prefix (containment is monotone in the prefix length): no re-tokenisation."""
    ids = list(ids)
    if eos_id is not None and eos_id in ids:
        ids = ids[: ids.index(eos_id) + 1]

    def has_stop(n: int) -> bool:
        text = tokenizer.decode(ids[:n], skip_special_tokens=False)
        return any(s in text for s in stops)

    if not ids or not has_stop(len(ids)):
        return ids
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if has_stop(mid):
            hi = mid
        else:
            lo = mid + 1
    return ids[:lo]


class HFGenerator:
    """Batched `model.generate` over token-id contexts, stopping each row at `</search>`, `</answer>` or EOS."""

    def __init__(self, model, tokenizer, stops: Sequence[str] = STOP_STRINGS):
        from transformers import StoppingCriteriaList, StopStringCriteria

        self.model, self.tokenizer, self.stops = model, tokenizer, tuple(stops)
        self.criteria = StoppingCriteriaList([StopStringCriteria(tokenizer, list(stops))])
        self.pad_id = tokenizer.pad_token_id
        self.eos_id = tokenizer.eos_token_id
        self.stats = {"generate_s": 0.0, "generated_tokens": 0, "calls": 0}

    @torch.no_grad()
    def generate(self, contexts: list[list[int]], max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0) -> list[list[int]]:
        if max_new_tokens <= 0:
            return [[] for _ in contexts]
        t0 = time.perf_counter()
        device = next(self.model.parameters()).device
        L = max(len(c) for c in contexts)
        ids = torch.full((len(contexts), L), self.pad_id, dtype=torch.long)
        att = torch.zeros((len(contexts), L), dtype=torch.long)
        for i, c in enumerate(contexts):  # left padding
            ids[i, L - len(c):] = torch.tensor(c)
            att[i, L - len(c):] = 1
        kw = dict(do_sample=temperature > 0, max_new_tokens=max_new_tokens, stopping_criteria=self.criteria,
                  pad_token_id=self.pad_id, eos_token_id=self.eos_id)
        if temperature > 0:
            kw.update(temperature=temperature, top_p=top_p, top_k=0)
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        with amp(device.type):
            out = self.model.generate(input_ids=ids.to(device), attention_mask=att.to(device), **kw)
        new = out[:, L:].tolist()
        res = [cut_at_stop(row, self.tokenizer, self.stops, self.eos_id) for row in new]
        self.stats["generate_s"] += time.perf_counter() - t0
        self.stats["generated_tokens"] += sum(len(r) for r in res)
        self.stats["calls"] += 1
        return res

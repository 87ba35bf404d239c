"""Multi-turn generation that keeps each trajectory's KV cache across turns.

`HFGenerator` re-encodes the whole context (prompt + every earlier turn + every `<information>` block) at each
turn; on a CPU that prefill is most of a rollout's cost. A `KVSession` holds one batch of trajectories:
  * the token prefix shared by every prompt (the Search-R1 instruction) is encoded once, at batch 1, and copied
    to every row;
  * each later call encodes only what is new since the row's last call (the last generated token and the
    observation), left-padded inside the new segment so the last column is every row's latest real token;
  * rows that finished are dropped from the cache, and tokens the environment did not keep (a row decoded past
    its stop while others were still running) are masked out, never attended to again.
Positions are counted over real tokens only, so a row's positions equal those of the plain, unpadded sequence.
The outputs match `HFGenerator` (tests check greedy equality on a tiny model); the saving is measured by
`benchmarks/rollout.py`.
"""
from __future__ import annotations

import functools
import time
from typing import Sequence

import torch

from dgpo_lib.env.prompts import STOP_STRINGS
from dgpo_lib.models.precision import amp


@functools.lru_cache(maxsize=1)
def growing_layer_class():
    """A KV-cache layer with spare capacity: appending a token writes into a buffer (doubling when full) instead
    of concatenating the whole cache at every decoding step (HF's DynamicLayer), which on a CPU costs more than
    the matmuls of a small model."""

    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def lazy_initialization(self, key_states, value_states):
            super().lazy_initialization(key_states, value_states)
            self._n = 0
            self._kb = self._vb = None

        def _grow(self, need: int, like_k, like_v) -> None:
            cap = 0 if self._kb is None else self._kb.shape[-2]
            if need <= cap:
                return
            cap = max(need, 2 * cap, 256)
            kb = like_k.new_empty(*like_k.shape[:-2], cap, like_k.shape[-1])
            vb = like_v.new_empty(*like_v.shape[:-2], cap, like_v.shape[-1])
            if self._n:
                kb[..., : self._n, :] = self._kb[..., : self._n, :]
                vb[..., : self._n, :] = self._vb[..., : self._n, :]
            self._kb, self._vb = kb, vb

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            s = key_states.shape[-2]
            self._grow(self._n + s, key_states, value_states)
            self._kb[..., self._n: self._n + s, :] = key_states
            self._vb[..., self._n: self._n + s, :] = value_states
            self._n += s
            self.keys, self.values = self._kb[..., : self._n, :], self._vb[..., : self._n, :]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self._n if self.is_initialized else 0

        def batch_select_indices(self, indices):
            if self.is_initialized and self._n:
                self._kb, self._vb = self._kb[indices], self._vb[indices]
                self.keys, self.values = self._kb[..., : self._n, :], self._vb[..., : self._n, :]

        def expand_batch(self, n: int) -> None:
            """Copy a batch-1 cache to n rows."""
            self._kb = self._kb.expand(n, -1, -1, -1).contiguous()
            self._vb = self._vb.expand(n, -1, -1, -1).contiguous()
            self.keys, self.values = self._kb[..., : self._n, :], self._vb[..., : self._n, :]

    return GrowingLayer


def decode_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Attention for one query token as two batched matmuls with the query heads grouped per KV head (no KV
    repeat). torch's CPU SDPA kernel with a mask is several times slower at q_len = 1; longer queries (prefill,
    training) go to HF's SDPA path unchanged."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    B, H, q, D = query.shape
    if q != 1 or dropout or query.device.type != "cpu":
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    kvh, T = key.shape[1], key.shape[2]
    scaling = D ** -0.5 if scaling is None else scaling
    qg = query.reshape(B, kvh, H // kvh, D)
    scores = torch.matmul(qg, key.transpose(-1, -2)).float() * scaling  # [B, kvh, g, T]
    if attention_mask is not None:
        m = attention_mask[..., -T:].reshape(B, 1, 1, T)
        scores = scores.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else scores + m
    out = torch.matmul(scores.softmax(-1).to(value.dtype), value)  # [B, kvh, g, D]
    return out.reshape(B, H, 1, D).transpose(1, 2).contiguous(), None


def use_decode_attention(model) -> None:
    """Route the model's attention through `decode_attention` (registered once under the name "dgpo_decode")."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    if "dgpo_decode" not in AttentionInterface._global_mapping:
        AttentionInterface.register("dgpo_decode", decode_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register("dgpo_decode", sdpa_mask)  # the same masks as SDPA
    if model.config._attn_implementation in ("sdpa", "dgpo_decode"):
        model.set_attn_implementation("dgpo_decode")


@functools.lru_cache(maxsize=8)
def _may_complete_stop(tokenizer, stops: tuple, vocab_size: int) -> torch.Tensor:
    """[vocab] True for tokens whose text contains a stop string's last character: only they can complete one.
    Cached per tokenizer: environments (and their generators) are made anew at every RL and KD step."""
    last_chars = {s[-1] for s in stops}
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    flags = [any(c in (t or "") for c in last_chars) for t in vocab]
    return torch.tensor(flags + [False] * max(0, vocab_size - len(flags)))


def common_prefix(rows: Sequence[Sequence[int]]) -> int:
    n = min(len(r) for r in rows)
    first = rows[0]
    for i in range(n):
        t = first[i]
        if any(r[i] != t for r in rows):
            return i
    return n


def sample_next(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Greedy at temperature 0, else nucleus sampling from softmax(logits / T)."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, -1)
    if top_p < 1.0:
        sp, si = probs.sort(-1, descending=True)
        keep = sp.cumsum(-1) - sp < top_p  # always keeps the most likely token
        sp = sp * keep
        probs = torch.zeros_like(probs).scatter_(-1, si, sp)
    return inverse_cdf_sample(probs)


CDF_BLOCK = 128  # tokens per block of the two-level cumulative sum (divides SmolLM2's and Qwen2.5's vocabularies)


def inverse_cdf_sample(probs: torch.Tensor, block: int = CDF_BLOCK) -> torch.Tensor:
    """One draw per row of `probs` [rows, vocab] (unnormalised is fine): the first token whose cumulative mass
    exceeds a uniform draw. One random number per row where `torch.multinomial` (an exponential race) draws one per
    vocabulary entry (benchmarks/sampling.py). Float64 sums keep the smallest probabilities representable; a token
    of zero probability is never drawn.

    The cumulative mass is found in two levels: float64 sums of blocks of `block` tokens and their running total
    pick the block the draw lands in, then a running sum inside that block alone picks the token. A float64 cumsum
    over the whole vocabulary is slow on CPU (benchmarks/sampling.py times both); the two levels give the same
    cumulative values up to float64 rounding, so the same draws (tests compare them with the one-level sum)."""
    R, V = probs.shape
    nb = -(-V // block)
    p = probs if nb * block == V else torch.nn.functional.pad(probs, (0, nb * block - V))
    p = p.view(R, nb, block)
    mass = p.sum(-1, dtype=torch.float64)                                   # [R, blocks]
    cum = mass.cumsum(-1)
    u = torch.rand(R, 1, dtype=torch.float64, device=probs.device) * cum[:, -1:]
    j = torch.searchsorted(cum, u, right=True).clamp_(max=nb - 1)           # the block holding the draw
    before = torch.where(j > 0, cum.gather(1, (j - 1).clamp(min=0)), torch.zeros_like(u))
    blk = p[torch.arange(R, device=p.device), j.squeeze(1)]                 # [R, block]
    k = torch.searchsorted(blk.cumsum(-1, dtype=torch.float64), u - before, right=True)
    last = block - 1 - (blk > 0).flip(-1).int().argmax(-1, keepdim=True)    # if rounding runs past the block's mass
    return (j * block + torch.minimum(k, last)).squeeze(1)


class KVGenerator:
    """Factory of sessions; also a drop-in `generate(contexts, ...)` (a one-call session) for single turns."""

    def __init__(self, model, tokenizer, stops: Sequence[str] = STOP_STRINGS):
        self.model, self.tokenizer, self.stops = model, tokenizer, tuple(stops)
        if model is not None:  # None: an environment whose generator is swapped for a scripted one
            use_decode_attention(model)
        self.pad_id, self.eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
        vocab_size = model.config.vocab_size if model is not None else len(tokenizer)
        self._may_stop = _may_complete_stop(tokenizer, self.stops, vocab_size)
        self.stats = {"generate_s": 0.0, "generated_tokens": 0, "calls": 0, "prefill_tokens": 0,
                      "decode_steps": 0, "prefill_s": 0.0, "decode_s": 0.0}

    def ends_turn(self, out: list[int], t: int) -> bool:
        """Whether `t`, just appended to `out`, is EOS or completes a stop string (only a token holding a stop
        string's last character can, so the tail is decoded for those alone)."""
        if t == self.eos_id:
            return True
        if not self._may_stop[t]:
            return False
        tail = self.tokenizer.decode(out[-16:], skip_special_tokens=False)
        return any(s in tail for s in self.stops)

    def session(self) -> "KVSession":
        return KVSession(self)

    def generate(self, contexts, max_new_tokens, temperature=0.0, top_p=1.0):
        return self.session().generate(list(range(len(contexts))), contexts, max_new_tokens, temperature, top_p)


class KVSession:
    def __init__(self, gen: KVGenerator):
        self.g = gen
        self.model = gen.model
        self.device = next(gen.model.parameters()).device
        self.cache = None
        self.rows: list[int] = []            # row keys in cache order
        self.tokens: dict[int, list[int]] = {}  # the real tokens in the cache, per row
        self.cols: dict[int, list[int]] = {}    # their cache columns
        self.attn: torch.Tensor | None = None   # [B, T] 1 where a cache column is a real token of that row

    # ------------------------------------------------------------------ cache bookkeeping
    def _forward(self, ids: torch.Tensor, seg_mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        from transformers import DynamicCache

        if self.cache is None:
            self.cache = DynamicCache()
            self.cache.layer_class_to_replicate = growing_layer_class()
        t0 = time.perf_counter()
        attn = seg_mask if self.attn is None else torch.cat([self.attn, seg_mask], 1)
        out = self.model(input_ids=ids.to(self.device), attention_mask=attn.to(self.device),
                         position_ids=pos.to(self.device), past_key_values=self.cache, use_cache=True,
                         logits_to_keep=1)
        self.attn = attn
        kind = "prefill" if ids.shape[1] > 1 else "decode"
        self.g.stats[f"{kind}_s"] += time.perf_counter() - t0
        self.g.stats["prefill_tokens" if kind == "prefill" else "decode_steps"] += \
            int(seg_mask.sum()) if kind == "prefill" else 1
        return out.logits[:, -1, :].float()

    def _select(self, keep_rows: list[int]) -> None:
        if keep_rows == self.rows:
            return
        idx = torch.tensor([self.rows.index(r) for r in keep_rows])
        for layer in self.cache.layers:
            layer.batch_select_indices(idx.to(self.device))
        self.attn = self.attn[idx]
        self.rows = list(keep_rows)

    def _start(self, rows: list[int], contexts: list[list[int]]) -> None:
        """Encode the prefix shared by every row once and copy it to each row."""
        p = min(common_prefix(contexts), min(len(c) for c in contexts) - 1)
        self.rows = list(rows)
        for r in rows:
            self.tokens[r], self.cols[r] = [], []
        if p > 0:
            ids = torch.tensor([contexts[0][:p]])
            self._forward(ids, torch.ones(1, p, dtype=torch.long), torch.arange(p)[None])
            for layer in self.cache.layers:
                layer.expand_batch(len(rows))
            self.attn = self.attn.expand(len(rows), -1).contiguous()
            for r, c in zip(rows, contexts):
                self.tokens[r], self.cols[r] = list(c[:p]), list(range(p))

    # ------------------------------------------------------------------ one turn
    @torch.no_grad()
    def generate(self, rows: list[int], contexts: list[list[int]], max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0) -> list[list[int]]:
        """Continue each row's `context` (which must extend what this session saw of that row)."""
        if max_new_tokens <= 0:
            return [[] for _ in contexts]
        # one autocast context for the whole turn: its weight cache casts each fp32 weight to bf16 once per turn,
        # not once per decoding step
        with amp(self.device.type):
            return self._generate(rows, contexts, max_new_tokens, temperature, top_p)

    def _generate(self, rows, contexts, max_new_tokens, temperature, top_p):
        t0 = time.perf_counter()
        if self.cache is None:
            self._start(rows, contexts)
        unknown = [r for r in rows if r not in self.tokens]
        if unknown:
            raise ValueError(f"rows {unknown} were not in this session's first call")
        self._select(list(rows))
        # what is new per row; a row whose context diverged from the cache (it decoded past its stop) masks the
        # extra columns, which keeps positions and attention identical to the plain sequence
        new: list[list[int]] = []
        for b, (r, ctx) in enumerate(zip(rows, contexts)):
            have = self.tokens[r]
            k = common_prefix([have, ctx]) if have else 0
            k = min(k, len(ctx) - 1)  # the last context token is always fed, for the next-token logits
            if k < len(have):
                self.attn[b, self.cols[r][k:]] = 0
                del have[k:], self.cols[r][k:]
            new.append(list(ctx[k:]))
        S = max(len(n) for n in new)
        B = len(rows)
        ids = torch.full((B, S), self.g.pad_id, dtype=torch.long)
        seg = torch.zeros((B, S), dtype=torch.long)
        pos = torch.zeros((B, S), dtype=torch.long)
        T = 0 if self.attn is None else self.attn.shape[1]
        for b, (r, n) in enumerate(zip(rows, new)):
            ids[b, S - len(n):] = torch.tensor(n)
            seg[b, S - len(n):] = 1
            start = len(self.tokens[r])
            pos[b, S - len(n):] = torch.arange(start, start + len(n))
            self.tokens[r] += n
            self.cols[r] += list(range(T + S - len(n), T + S))
        logits = self._forward(ids, seg, pos)

        outs: list[list[int]] = [[] for _ in rows]
        alive = torch.ones(B, dtype=torch.bool)
        for step in range(max_new_tokens):
            nxt = sample_next(logits, temperature, top_p).cpu()
            for b in torch.nonzero(alive).flatten().tolist():
                t = int(nxt[b])
                outs[b].append(t)
                if self.g.ends_turn(outs[b], t):
                    alive[b] = False
            if not alive.any() or step == max_new_tokens - 1:
                break
            # feed the sampled tokens; rows that already stopped are fed too (one batch shape) but masked
            T = self.attn.shape[1]
            seg = alive.long()[:, None]
            step_pos = torch.tensor([len(self.tokens[r]) for r in rows])[:, None]
            for b in torch.nonzero(alive).flatten().tolist():
                self.tokens[rows[b]].append(int(nxt[b]))
                self.cols[rows[b]].append(T)
            logits = self._forward(nxt[:, None], seg, step_pos)
        self.g.stats["generate_s"] += time.perf_counter() - t0
        self.g.stats["generated_tokens"] += sum(len(o) for o in outs)
        self.g.stats["calls"] += 1
        return outs

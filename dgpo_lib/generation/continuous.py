"""Continuous batching for Search-R1 rollouts.

The lock-step environment (`SearchEnv.run` with `KVGenerator`) runs every trajectory of a batch through turn 1,
then turn 2, and so on: a row that closed its `</search>` after 12 tokens waits for the row that writes 64, and a
batch waits for its slowest trajectory before the next batch starts (the teacher's batched rollouts used 28% of
their decode slots, `benchmarks/rollout.py`). Here a fixed number of slots each hold one trajectory that runs its
own turns: a row that stops is answered by the environment (retrieval, the observation is prefilled) while the
others keep decoding, and a slot whose trajectory ended takes the next question at once.

`RaggedCache` keeps one KV buffer per layer, `[slots, kv_heads, capacity, head_dim]`, where slot b's tokens are
its columns 0..length[b]-1 with no padding between them, so a token's position is its column. A forward call
writes each row's new tokens at the row's own offset and attends through a 4-D mask built from the lengths;
transformers passes such a mask through unchanged. Decoding runs over every slot at once (a slot that is not
decoding writes a throwaway column past its length, which the next real token overwrites); prefills (prompt
tails, observations) run on just the rows that need them, right-padded, reading logits at each row's last token.
Greedy outputs equal the lock-step generator's (tests/test_continuous.py).
"""
from __future__ import annotations

import time
from collections import deque
from typing import Callable, Sequence

import torch

from dgpo_lib.env.rollout import Trajectory
from dgpo_lib.generation.kv import KVGenerator, common_prefix, sample_next
from dgpo_lib.models.precision import amp


class RaggedCache:
    """The KV cache of `slots` trajectories of different lengths (duck-types what HF attention layers call)."""

    def __init__(self, slots: int, device, limit: int | None = None):
        self.slots, self.device = slots, device
        self.limit = limit  # the most columns a slot can use (the context limit, plus one throwaway column)
        self.lengths = torch.zeros(slots, dtype=torch.long)  # real tokens per slot (CPU)
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self._idx: torch.Tensor | None = None  # rows of the current forward; None = every slot, in order
        self._pos: torch.Tensor | None = None  # [b, s] cache column of each new token
        self._T = 0

    @property
    def capacity(self) -> int:
        return self.k[0].shape[2] if self.k else 0

    def _grow(self, need: int) -> None:
        if not self.k or need <= self.capacity:
            return
        cap = max(need, 2 * self.capacity)
        if self.limit:  # doubling past the context limit would only hold columns no token can reach
            cap = max(need, min(cap, self.limit))
        for layers in (self.k, self.v):
            for i, t in enumerate(layers):
                bigger = t.new_zeros(t.shape[0], t.shape[1], cap, t.shape[3])
                bigger[:, :, : t.shape[2]] = t
                layers[i] = bigger

    def begin(self, rows: torch.Tensor | None, pos: torch.Tensor) -> None:
        """Set where the next forward's tokens go: `pos[i, j]` is the column of row `rows[i]`'s j-th new token."""
        self._idx = None if rows is None else rows.to(self.device)
        self._rows = torch.arange(self.slots, device=self.device) if rows is None else self._idx  # once, not per layer
        self._pos = pos.to(self.device)
        self._T = int(pos.max()) + 1
        self._grow(self._T)

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args, **kwargs):
        if layer_idx == len(self.k):  # first forward: allocate this layer
            shape = (self.slots, key.shape[1], max(self._T, 256), key.shape[3])
            self.k.append(key.new_zeros(shape))
            self.v.append(value.new_zeros(shape))
        K, V = self.k[layer_idx], self.v[layer_idx]
        rows = self._rows
        K[rows[:, None], :, self._pos] = key.transpose(1, 2).to(K.dtype)  # [b, s, kv_heads, head_dim]
        V[rows[:, None], :, self._pos] = value.transpose(1, 2).to(V.dtype)
        if self._idx is None:
            return K[:, :, : self._T], V[:, :, : self._T]
        return K[self._idx, :, : self._T], V[self._idx, :, : self._T]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self._T

    def copy_from(self, other: "RaggedCache", slot: int, n: int) -> None:
        """Copy the first n columns of `other`'s slot 0 (the shared prompt prefix) into `slot`."""
        if not self.k:
            shape = lambda t: (self.slots, t.shape[1], max(other.capacity, 256), t.shape[3])  # noqa: E731
            self.k = [t.new_zeros(shape(t)) for t in other.k]
            self.v = [t.new_zeros(shape(t)) for t in other.v]
        self._grow(n)
        for mine, theirs in zip(self.k + self.v, other.k + other.v):
            mine[slot, :, :n] = theirs[0, :, :n]
        self.lengths[slot] = n


class ContinuousGenerator(KVGenerator):
    """A `KVGenerator` (its lock-step `generate` still works) that can also run whole episodes continuously."""

    def rollout(self, env, questions: Sequence, slots: int | None = None,
                on_done: Callable | None = None) -> list:
        with torch.no_grad(), amp(next(self.model.parameters()).device.type):
            return _Episodes(self, env, questions, slots or len(questions), on_done).run()


class _Episodes:
    def __init__(self, gen: ContinuousGenerator, env, questions, slots: int, on_done):

        self.g, self.env, self.on_done = gen, env, on_done
        self.s = env.s
        self.trajs = [Trajectory(q, env.prompt_ids(q)) for q in questions]
        self.S = max(1, min(slots, len(self.trajs)))
        self.device = next(gen.model.parameters()).device
        self.cache = RaggedCache(self.S, self.device, limit=self.s.max_total_tokens + 1)
        self.queue = deque(range(len(self.trajs)))
        self.slot_traj: list[int | None] = [None] * self.S
        self.feed: list[list[int]] = [[] for _ in range(self.S)]  # tokens to feed next, per slot
        self.out: list[list[int]] = [[] for _ in range(self.S)]   # this turn's generated tokens
        self.turn = [0] * self.S
        self.budget = [0] * self.S

    # ------------------------------------------------------------------ forward passes
    def _forward(self, rows: list[int], feeds: list[list[int]], all_slots: bool) -> torch.Tensor:
        """One forward over `rows` (every slot when `all_slots`, rows not in `rows` get a throwaway pad token);
        returns the next-token logits after each row's last fed token, [len(rows), vocab]."""
        g = self.g
        t0 = time.perf_counter()
        n = self.S if all_slots else len(rows)
        where = {r: i for i, r in enumerate(rows)}
        seqs = [feeds[where[b]] if b in where else [g.pad_id] for b in range(self.S)] if all_slots else feeds
        s = max(len(f) for f in seqs)
        ids = torch.tensor([f + [g.pad_id] * (s - len(f)) for f in seqs])  # right-padded
        idx = None if all_slots else torch.tensor(rows)
        starts = self.cache.lengths if all_slots else self.cache.lengths[idx]
        pos = starts[:, None] + torch.arange(s)[None]
        T = int(pos.max()) + 1
        mask = (torch.arange(T)[None, None, :] <= pos[:, :, None])[:, None]  # [n, 1, s, T]
        self.cache.begin(idx, pos)
        last = torch.tensor([len(f) - 1 for f in seqs])[:, None]  # each row's last real token
        out = g.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                      position_ids=pos.to(self.device), past_key_values=self.cache, use_cache=True,
                      logits_to_keep=1 if s == 1 else last.to(self.device))
        logits = out.logits[:, -1]
        if all_slots:
            logits = logits[torch.tensor(rows, device=logits.device)]
        kind = "prefill" if s > 1 else "decode"
        g.stats[f"{kind}_s"] += time.perf_counter() - t0
        if kind == "prefill":
            g.stats["prefill_tokens"] += sum(len(f) for f in feeds)
        else:
            g.stats["decode_steps"] += 1
            g.stats["decode_slots"] = g.stats.get("decode_slots", 0) + n
        for b, f in zip(rows, feeds):
            self.cache.lengths[b] += len(f)
        return logits.float()

    # ------------------------------------------------------------------ episode bookkeeping
    def _context(self, b: int) -> list[int]:
        tr = self.trajs[self.slot_traj[b]]
        return tr.prompt_ids + tr.response_ids

    def _start_turn(self, b: int) -> bool:
        """Set up slot b's next turn; False when its trajectory has no room left for one."""
        tr = self.trajs[self.slot_traj[b]]
        self.budget[b], self.out[b] = self.env.turn_budget(tr), []
        self.feed[b] = self._context(b)[int(self.cache.lengths[b]):]
        return self.budget[b] > 0

    def _close(self, b: int, reason: str) -> None:
        tr = self.trajs[self.slot_traj[b]]
        tr.finish = reason
        self.env.score(tr)
        if self.on_done:
            self.on_done(tr)

    def _finish(self, b: int, reason: str) -> None:
        """End slot b's trajectory and give the slot to the next question."""
        self._close(b, reason)
        self._admit(b)

    def _admit(self, b: int) -> None:
        self.slot_traj[b], self.feed[b] = None, []
        while self.queue:
            self.slot_traj[b], self.turn[b] = self.queue.popleft(), 0
            self.cache.copy_from(self.prefix, b, self.p)
            if self._start_turn(b):
                return
            self._close(b, "length")
            self.slot_traj[b], self.feed[b] = None, []

    def _encode_prefix(self) -> None:
        """The prompt prefix every question shares (the instruction) is encoded once, at batch 1."""
        prompts = [t.prompt_ids for t in self.trajs]
        self.p = max(0, min(common_prefix(prompts), min(len(p) for p in prompts) - 1))
        self.prefix = RaggedCache(1, self.device)
        if self.p:
            pos = torch.arange(self.p)[None]
            self.prefix.begin(None, pos)
            self.g.model(input_ids=torch.tensor([prompts[0][: self.p]], device=self.device),
                         attention_mask=(torch.arange(self.p)[None, :] <= pos[0][:, None])[None, None].to(self.device),
                         position_ids=pos.to(self.device), past_key_values=self.prefix, use_cache=True,
                         logits_to_keep=1)
            self.g.stats["prefill_tokens"] += self.p

    # ------------------------------------------------------------------ the loop
    def run(self) -> list:
        if not self.trajs:
            return []
        t_start = time.perf_counter()
        g, s = self.g, self.s
        self._encode_prefix()
        for b in range(self.S):
            self._admit(b)
        while any(i is not None for i in self.slot_traj):
            live = [b for b in range(self.S) if self.slot_traj[b] is not None]
            prefill = sorted((b for b in live if len(self.feed[b]) > 1), key=lambda b: len(self.feed[b]))
            decode = [b for b in live if len(self.feed[b]) == 1]
            logits: dict[int, torch.Tensor] = {}
            for c in range(0, len(prefill), 8):  # small groups of similar lengths: little padding
                rows = prefill[c: c + 8]
                for b, row in zip(rows, self._forward(rows, [self.feed[b] for b in rows], all_slots=False)):
                    logits[b] = row
            if decode:
                all_slots = 2 * len(decode) >= self.S  # a throwaway token per idle slot beats gathering the cache
                for b, row in zip(decode, self._forward(decode, [self.feed[b] for b in decode], all_slots)):
                    logits[b] = row
            rows = sorted(logits)
            nxt = sample_next(torch.stack([logits[b] for b in rows]), s.temperature, s.top_p).cpu().tolist()
            ended = []
            for b, t in zip(rows, nxt):
                self.feed[b] = [t]
                self.out[b].append(t)
                g.stats["generated_tokens"] += 1
                if len(self.out[b]) >= self.budget[b] or g.ends_turn(self.out[b], t):
                    ended.append(b)
            pending = []
            for b in ended:
                tr = self.trajs[self.slot_traj[b]]
                finish, query = self.env.end_turn(tr, self.out[b], self.turn[b] < s.max_turns)
                self.turn[b] += 1
                if finish:
                    self._finish(b, finish)
                elif query:
                    pending.append((tr, query, b))
                elif not self._start_turn(b):  # the invalid-action message was appended
                    self._finish(b, "length")
            self.env.observe([(tr, q) for tr, q, _ in pending])
            for _, _, b in pending:
                if not self._start_turn(b):
                    self._finish(b, "length")
        g.stats["generate_s"] += time.perf_counter() - t_start
        g.stats["calls"] += 1
        return self.trajs

"""Stage 1 and the KD baselines: SeqKD, KD (DGPO's cold start), GKD, DistiLLM and TAID.

All five share one step: pick a batch of sequences (teacher trajectories, or fresh student rollouts for the
on-policy parts of GKD and DistiLLM), score them with the student and, except SeqKD, the teacher at the
positions of the *generated* tokens only, and minimise the method's per-token loss averaged over those tokens.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Callable, Sequence

import torch

from dgpo_lib.config import val_interval
from dgpo_lib.memory import release_memory
from dgpo_lib.methods import KDMethod
from dgpo_lib.models.policy import action_logits, add_lora, save_policy
from dgpo_lib.train import losses
from dgpo_lib.train.batching import Seq, collate_seqs, length_buckets
from dgpo_lib.train.budget import Budget
from dgpo_lib.train.loop import kd_schedule, run_training

log = logging.getLogger(__name__)

class ReplayBuffer:
    """The last `capacity` student-generated sequences (TAID's `ReplayBuffer`, which GKD's "mixed" and DistiLLM's
    "adaptive" sampling draw from). Saved with the checkpoint, so a resumed run samples as an uninterrupted one."""

    def __init__(self, capacity: int = 1000):
        self.capacity, self.items = capacity, []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, seqs: Sequence[Seq]) -> None:
        self.items = (self.items + list(seqs))[-self.capacity:]

    def sample(self, rng: random.Random, n: int) -> list[Seq]:
        return rng.sample(self.items, min(n, len(self.items)))

    def state_dict(self):
        return {"capacity": self.capacity, "items": [[s.prompt_ids, s.response_ids, s.action_mask] for s in self.items]}

    def load_state_dict(self, d):
        self.capacity, self.items = d["capacity"], [Seq(*x) for x in d["items"]]


class AdaptiveSampling:
    """DistiLLM's adaptive off-policy schedule as TAID's `SampleGenerator(sampling_type="adaptive")` runs it.

    A threshold starts at 0 and rises by 0.1 (up to 1) whenever the validation loss is at least the reference loss
    (the first one, then the one of the last rise). Each step draws r ~ U(0, 1): r below the decreasing share
    threshold * (1 - step / total), or below the threshold while the buffer is not full, means a fresh batch of
    student generations (added to the buffer); r below the threshold otherwise means a batch from the buffer;
    else the teacher's sequences."""

    def __init__(self, eps: float = 0.0):
        self.threshold, self.prev, self.eps = 0.0, None, eps

    def observe(self, val_loss: float) -> None:
        if self.prev is None:
            self.prev = val_loss
        elif val_loss >= self.prev + self.eps:
            self.threshold = min(1.0, self.threshold + 0.1)
            self.prev = val_loss

    def source(self, r: float, step: int, total: int, buffer_len: int, capacity: int) -> str:
        if r < self.threshold * (1 - step / total) or (r < self.threshold and buffer_len < capacity):
            return "fresh"
        return "replay" if r < self.threshold else "teacher"

    def state_dict(self):
        return {"threshold": self.threshold, "prev": self.prev}

    def load_state_dict(self, d):
        self.threshold, self.prev = d["threshold"], d["prev"]


def per_token_loss(m: KDMethod, kd_cfg, schedule: losses.TAIDSchedule | None = None) -> Callable:
    """`fn(student_logits, teacher_logits, targets)` -> the method's loss per generated token: its loss function
    of `losses` called with the inputs and `kd.` config values its row names (`methods.KDMethod.args`)."""
    fn = getattr(losses, m.loss)
    fixed = {a: getattr(kd_cfg, a.removeprefix("kd.")) for a in m.args if a.startswith("kd.")}

    def per_token(s_logits, t_logits, targets):
        given = {"student": s_logits, "teacher": t_logits, "targets": targets,
                 "taid_t": schedule.t if schedule is not None else None}
        return fn(*[fixed[a] if a in fixed else given[a] for a in m.args])
    return per_token


def train_kd(m: KDMethod, student, tokenizer, teacher, data: Sequence[Seq], cfg, budget: Budget,
             run_dir: Path, student_rollout: Callable[[int, int], list[Seq]] | None = None, progress: bool = True,
             stop_after: int | None = None, out_dir: Path | None = None,
             val_fn: Callable[[int], dict] | None = None, held_out: Sequence[Seq] = ()) -> list[dict]:
    """Train `student` in place with KD method `m` for `budget.steps` optimiser steps; returns the metrics rows.

    `student_rollout(step, n)` must return n fresh (greedy, as TAID's sampler) student trajectories: the
    student-generated batches of `mixed` and `adaptive` data. `held_out`: teacher sequences never trained on,
    whose loss drives DistiLLM's adaptive schedule (TAID: its validation set)."""
    k, t, name = cfg.kd, cfg.train, m.name
    if m.needs_teacher and teacher is None:
        raise ValueError(f"{name} needs teacher logits")
    if not data:
        raise ValueError("no training sequences (did the teacher get any question right?)")
    if t.lora:
        student = add_lora(student, t.lora_r, t.lora_alpha)
    student.train()
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=budget.lr)
    sched = kd_schedule(opt, budget.steps, budget.warmup_ratio, budget.lr_schedule)
    helpers: dict = {}
    taid = adaptive = buffer = None
    if m.interpolated:
        taid = helpers["taid"] = losses.TAIDSchedule(k.taid_t_start, k.taid_t_end, k.taid_alpha, k.taid_beta,
                                                     budget.steps)
    if m.data != "teacher":
        buffer = helpers["replay"] = ReplayBuffer(k.replay_capacity)
    if m.data == "adaptive":
        if not held_out:
            raise ValueError(f"{name} needs held-out teacher sequences for its adaptive schedule")
        adaptive = helpers["adaptive"] = AdaptiveSampling()
        held_out = list(held_out[: k.distillm_val_seqs])
    on_policy = m.on_policy
    if m.data == "mixed" and isinstance(on_policy, str):  # a config key (read only where used: the cache keys)
        on_policy = getattr(k, on_policy.removeprefix("kd."))
    per_token = per_token_loss(m, k, taid)

    def batch_loss(seqs: list[Seq], backward: bool) -> tuple[float, int]:
        n_tok = sum(sum(s.action_mask) for s in seqs) or 1
        total = 0.0
        for idx in length_buckets([s.length for s in seqs], budget.micro_batch):
            b = collate_seqs([seqs[i] for i in idx], tokenizer.pad_token_id)
            with torch.set_grad_enabled(backward):
                s_logits, targets, _ = action_logits(student, b)
                t_logits = None
                if m.needs_teacher:
                    with torch.no_grad():
                        t_logits = action_logits(teacher, b)[0].to(s_logits.device)
            total += losses.chunked_loss_backward(s_logits, per_token, t_logits, targets, n_tok, backward)
        return total, n_tok

    def student_batch(step: int) -> list[Seq]:
        if student_rollout is None:
            raise ValueError(f"{name} needs a student_rollout function for its student-generated batches")
        student.eval()
        seqs = [s for s in student_rollout(step, budget.batch_size) if sum(s.action_mask)]
        release_memory()  # the rollout's KV caches, before the training step's activations
        student.train()
        return seqs

    def step_fn(step: int) -> dict:
        rng = random.Random(f"{cfg.seed}:{name}:{step}")
        source = "teacher"
        if m.data == "mixed" and rng.random() < on_policy:
            source = "mixed"  # TAID's "mixed": fresh generations join the buffer, the batch is drawn from it
        elif m.data == "adaptive":
            source = adaptive.source(rng.random(), step, budget.steps, len(buffer), buffer.capacity)
        if source == "teacher":
            seqs = [data[i] for i in rng.sample(range(len(data)), min(budget.batch_size, len(data)))]
        else:
            fresh = student_batch(step) if source in ("mixed", "fresh") else []
            buffer.add(fresh)
            seqs = fresh if source == "fresh" else buffer.sample(rng, budget.batch_size)
        opt.zero_grad(set_to_none=True)
        loss, n_tok = batch_loss(seqs, backward=True) if seqs else (0.0, 0)
        gnorm = torch.nn.utils.clip_grad_norm_(student.parameters(), t.max_grad_norm)
        opt.step()
        sched.step()
        row = {"loss": loss, "tokens": n_tok, "on_policy": float(source != "teacher"), "grad_norm": float(gnorm),
               "lr": sched.get_last_lr()[0]}
        if taid is not None:
            row["taid_t"] = taid.t
            taid.update(step, loss)
        if adaptive is not None:
            row["fresh"] = float(source == "fresh")
            if (step + 1) % k.distillm_val_every == 0:
                student.eval()
                val, _ = batch_loss(held_out, backward=False)
                student.train()
                adaptive.observe(val)
                row["val_loss"] = val
            row["distillm_threshold"] = adaptive.threshold
        return row

    rows = run_training(run_dir, budget.steps, step_fn, {"student": student}, {"opt": opt}, {"sched": sched}, helpers,
                        save_every=cfg.train.save_every, desc=name, progress=progress, stop_after=stop_after,
                        val_fn=val_fn, val_every=val_interval(cfg, budget.steps))
    student.eval()
    if out_dir is not None and (stop_after is None or stop_after >= budget.steps):
        save_policy(student, tokenizer, out_dir)
    return rows

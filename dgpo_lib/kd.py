"""Stage 1 and the KD baselines: SeqKD, KD (DGPO's cold start), GKD, DistiLLM and TAID.

All five share one step: pick a batch of sequences (teacher trajectories, or fresh student rollouts for the
on-policy parts of GKD and DistiLLM), score them with the student and, except SeqKD, the teacher at the
positions of the *generated* tokens only, and minimise the method's per-token loss averaged over those tokens.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from . import losses
from .policy import action_logits, add_lora, save_policy
from .rollout import collate
from .train_loop import linear_warmup, run_training

log = logging.getLogger(__name__)

KD_METHODS = ("seqkd", "kd", "gkd", "distillm", "taid")


@dataclass
class Seq:
    prompt_ids: list[int]
    response_ids: list[int]
    action_mask: list[int]

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


def length_buckets(lengths: Sequence[int], micro: int) -> list[list[int]]:
    """Micro-batches of similar length (sorted, then chunked): far less padding than arrival order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + micro] for i in range(0, len(order), micro)]


def padding_share(lengths: Sequence[int], buckets: list[list[int]]) -> float:
    computed = sum(max(lengths[i] for i in b) * len(b) for b in buckets)
    return 1 - sum(lengths) / computed if computed else 0.0


class AdaptiveReplay:
    """DistiLLM's adaptive off-policy schedule, simplified: the probability of training on student-generated
    sequences starts at 0 and rises by 0.1 (up to `cap`) whenever the loss on a fixed held-out teacher batch
    rises by more than `eps` relative to its best value."""

    def __init__(self, cap: float = 0.5, eps: float = 0.1):
        self.p, self.cap, self.eps, self.best = 0.0, cap, eps, None

    def observe(self, val_loss: float) -> None:
        if self.best is not None and val_loss > self.best * (1 + self.eps):
            self.p = min(self.cap, self.p + 0.1)
        self.best = val_loss if self.best is None else min(self.best, val_loss)

    def state_dict(self):
        return {"p": self.p, "best": self.best}

    def load_state_dict(self, d):
        self.p, self.best = d["p"], d["best"]


LOSS_CHUNK = 512  # action positions per piece of a divergence over the vocabulary


def chunked_loss_backward(s_logits, per_token: Callable, t_logits, targets, n_tok: int, backward: bool,
                          chunk: int = LOSS_CHUNK) -> float:
    """sum(per_token(...)) / n_tok, computed and back-propagated a slice of positions at a time.

    A divergence over a 49k vocabulary makes several [positions, vocab] temporaries (softmaxes, mixtures, their
    gradients); on-policy batches of long student rollouts have thousands of positions, so all at once they
    cost gigabytes. The gradient w.r.t. the logits is accumulated slice by slice on a detached copy and sent
    through the network once: the same gradient, a bounded peak."""
    z = s_logits.detach().requires_grad_(backward)
    total = 0.0
    for a in range(0, len(z), chunk):
        sl = slice(a, a + chunk)
        with torch.set_grad_enabled(backward):
            loss = per_token(z[sl], None if t_logits is None else t_logits[sl], targets[sl]).sum() / n_tok
        if backward:
            loss.backward()
        total += loss.item()
    if backward and z.grad is not None:
        s_logits.backward(z.grad)
    return total


def train_kd(method: str, student, tokenizer, teacher, data: Sequence[Seq], cfg, run_dir: Path,
             student_rollout: Callable[[int, int], list[Seq]] | None = None, progress: bool = True,
             stop_after: int | None = None, out_dir: Path | None = None,
             val_fn: Callable[[int], dict] | None = None) -> list[dict]:
    """Train `student` in place with `method` for cfg.kd.steps optimiser steps; returns the metrics rows.

    `student_rollout(step, n)` must return n fresh student trajectories (GKD and DistiLLM on-policy parts)."""
    if method not in KD_METHODS:
        raise ValueError(f"unknown KD method {method!r}; choose from {KD_METHODS}")
    if method != "seqkd" and teacher is None:
        raise ValueError(f"{method} needs teacher logits")
    if not data:
        raise ValueError("no training sequences (did the teacher get any question right?)")
    k, t = cfg.kd, cfg.train
    if t.lora:
        student = add_lora(student, t.lora_r, t.lora_alpha)
    student.train()
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=k.lr)
    sched = linear_warmup(opt, k.steps, k.warmup_ratio)
    helpers: dict = {}
    taid = replay = None
    if method == "taid":
        taid = helpers["taid"] = losses.TAIDSchedule(k.taid_t_start, k.taid_t_end, k.taid_alpha, k.taid_beta, k.steps)
    if method == "distillm":
        replay = helpers["replay"] = AdaptiveReplay(k.distillm_replay)
    held_out = list(data[: min(len(data), k.batch_size)])

    def per_token(s_logits, t_logits, targets):
        if method == "seqkd":
            return losses.token_nll(s_logits, targets)
        if method == "kd":
            return losses.forward_kl(s_logits, t_logits)
        if method == "gkd":
            return losses.generalized_jsd(s_logits, t_logits, k.gkd_beta)
        if method == "distillm":
            return losses.skew_reverse_kl(s_logits, t_logits, k.skew_alpha)
        return losses.taid_loss(s_logits, t_logits, taid.t)

    def batch_loss(seqs: list[Seq], backward: bool) -> tuple[float, int]:
        n_tok = sum(sum(s.action_mask) for s in seqs) or 1
        total = 0.0
        for idx in length_buckets([s.length for s in seqs], t.micro_batch):
            b = collate([(seqs[i].prompt_ids, seqs[i].response_ids, seqs[i].action_mask) for i in idx],
                        tokenizer.pad_token_id)
            with torch.set_grad_enabled(backward):
                s_logits, targets, _ = action_logits(student, b)
                t_logits = None
                if method != "seqkd":
                    with torch.no_grad():
                        t_logits = action_logits(teacher, b)[0].to(s_logits.device)
            total += chunked_loss_backward(s_logits, per_token, t_logits, targets, n_tok, backward)
        return total, n_tok

    def step_fn(step: int) -> dict:
        rng = random.Random(f"{cfg.seed}:{method}:{step}")
        on_policy = False
        if method == "gkd":
            on_policy = rng.random() < k.gkd_lambda
        elif method == "distillm":
            on_policy = rng.random() < replay.p
        if on_policy:
            if student_rollout is None:
                raise ValueError(f"{method} needs a student_rollout function for its on-policy batches")
            student.eval()
            seqs = [s for s in student_rollout(step, k.batch_size) if sum(s.action_mask)]
            student.train()
        else:
            seqs = [data[i] for i in rng.sample(range(len(data)), min(k.batch_size, len(data)))]
        opt.zero_grad(set_to_none=True)
        loss, n_tok = batch_loss(seqs, backward=True) if seqs else (0.0, 0)
        gnorm = torch.nn.utils.clip_grad_norm_(student.parameters(), t.max_grad_norm)
        opt.step()
        sched.step()
        m = {"loss": loss, "tokens": n_tok, "on_policy": float(on_policy), "grad_norm": float(gnorm),
             "lr": sched.get_last_lr()[0]}
        if taid is not None:
            m["taid_t"] = taid.t
            taid.update(step, loss)
        if replay is not None and (step + 1) % 5 == 0:
            student.eval()
            val, _ = batch_loss(held_out, backward=False)
            student.train()
            replay.observe(val)
            m["val_loss"], m["replay_p"] = val, replay.p
        return m

    rows = run_training(run_dir, k.steps, step_fn, {"student": student}, {"opt": opt}, {"sched": sched}, helpers,
                        save_every=cfg.train.save_every, desc=method, progress=progress, stop_after=stop_after,
                        val_fn=val_fn, val_every=cfg.eval.val_every)
    student.eval()
    if out_dir is not None and (stop_after is None or stop_after >= k.steps):
        save_policy(student, tokenizer, out_dir)
    return rows

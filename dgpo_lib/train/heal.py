"""Healing a layer-pruned student before any agentic training (the `student` stage).

Dropping half of SmolLM2's 30 layers leaves a network whose next-token loss on Wikipedia text is far above the
unpruned base's (with evenly spaced layers, worse than a uniform guess over the 49k-token vocabulary; the stage's
done.json records the held-out loss of both models), so no amount of task KD on a few dozen trajectories makes it write sentences. DistilBERT and Minitron fix this the same way: distil the unpruned model into the
pruned one on generic text first. Here that text is the retrieval corpus's Wikipedia passages minus the gold
passages of every evaluation question, with forward KL to the *base* model (SmolLM2-135M-Instruct, never the
search-agent teacher): the student learns language again but nothing about the search protocol, so it plays
the paper's "Student (no training)" role, an instruct model that has never seen the task.

The tied embedding / output matrix is frozen: it is already right, and its gradient is the largest matmul of
the step.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Sequence

import torch

from dgpo_lib.config import val_interval
from dgpo_lib.models.policy import action_logits, save_policy
from dgpo_lib.train import losses
from dgpo_lib.train.batching import collate
from dgpo_lib.train.loop import linear_warmup, run_training

log = logging.getLogger(__name__)


def _batch(tok, texts: Sequence[str], max_len: int):
    """Whole passages as 'responses' after their first token, so every next-token prediction is scored."""
    seqs = []
    for t in texts:
        ids = tok(t, add_special_tokens=False, truncation=True, max_length=max_len)["input_ids"]
        if len(ids) >= 2:
            seqs.append((ids[:1], ids[1:], [1] * (len(ids) - 1)))
    return collate(seqs, tok.pad_token_id)


@torch.no_grad()
def text_loss(model, tok, texts: Sequence[str], max_len: int, batch: int = 16) -> float:
    """Mean next-token cross-entropy (nats per token) of `model` on `texts`."""
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for a in range(0, len(texts), batch):
        logits, targets, _ = action_logits(model, _batch(tok, texts[a:a + batch], max_len))
        total += losses.token_nll(logits, targets).sum().item()
        n += len(targets)
    model.train(was_training)
    return total / max(n, 1)


def heal_student(student, base, tok, texts: Sequence[str], held_out: Sequence[str], cfg, run_dir: Path,
                 out_dir: Path, progress: bool = True, stop_after: int | None = None) -> dict:
    """Distil `base` into `student` on `texts` for cfg.models.heal_steps steps; returns held-out losses."""
    m = cfg.models
    if not texts:
        raise ValueError("no healing text (is the corpus empty?)")
    emb = student.get_input_embeddings().weight
    emb.requires_grad_(False)
    out_emb = student.get_output_embeddings()
    if out_emb is not None:
        out_emb.weight.requires_grad_(False)
    before = {"student": text_loss(student, tok, held_out, m.heal_seq_len),
              "base": text_loss(base, tok, held_out, m.heal_seq_len)}
    log.info("held-out loss before healing: student %.3f, base %.3f", before["student"], before["base"])
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=m.heal_lr, weight_decay=0.0)
    sched = linear_warmup(opt, m.heal_steps, 0.05)
    student.train()

    def step_fn(step: int) -> dict:
        rng = random.Random(f"{cfg.seed}:heal:{step}")  # data order = f(seed, step): resumable
        b = _batch(tok, [texts[i] for i in rng.sample(range(len(texts)), min(m.heal_batch, len(texts)))],
                   m.heal_seq_len)
        opt.zero_grad(set_to_none=True)
        s_logits, targets, _ = action_logits(student, b)
        with torch.no_grad():
            t_logits = action_logits(base, b)[0].to(s_logits.device)
        loss = losses.chunked_loss_backward(s_logits, lambda s, t, _: losses.forward_kl(s, t), t_logits, targets,
                                     len(targets), backward=True)
        gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm)
        opt.step()
        sched.step()
        return {"loss": loss, "tokens": len(targets), "grad_norm": float(gnorm), "lr": sched.get_last_lr()[0]}

    # the healing curve: held-out next-token loss every eval.val_every steps (val_metrics.jsonl)
    run_training(run_dir, m.heal_steps, step_fn, {"student": student}, {"opt": opt}, {"sched": sched},
                 save_every=cfg.train.save_every, desc="heal student", progress=progress, stop_after=stop_after,
                 val_fn=lambda step: {"held_out_loss": text_loss(student, tok, held_out, m.heal_seq_len)},
                 val_every=val_interval(cfg, m.heal_steps))
    student.eval()
    emb.requires_grad_(True)
    if out_emb is not None:
        out_emb.weight.requires_grad_(True)
    after = text_loss(student, tok, held_out, m.heal_seq_len)
    log.info("held-out loss after healing: %.3f (base %.3f)", after, before["base"])
    if stop_after is None or stop_after >= m.heal_steps:
        save_policy(student, tok, out_dir)
    return {"held_out_loss_before": before["student"], "held_out_loss_after": after,
            "held_out_loss_base": before["base"], "n_texts": len(texts), "n_held_out": len(held_out)}

"""How long and how fast one training runs: steps, learning rate, batch, warm-up, schedule and micro-batch.

The trainers take a `Budget` instead of reading `kd.steps` or `rl.steps` from the config, so a training with its
own budget (the teacher's SFT, the teacher's PPO) passes one and never rewrites the config."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    steps: int              # optimiser steps (RL: iterations of rollouts + updates)
    lr: float               # the (actor's) learning rate
    batch_size: int         # sequences per optimiser step (RL: prompts rolled out per iteration)
    warmup_ratio: float     # share of the steps of linear warm-up
    micro_batch: int        # sequences per forward/backward pass (memory only, not results)
    lr_schedule: str = "constant"  # constant (after the warm-up) or cosine (decay to 0)

    def __post_init__(self):
        if self.steps < 0 or self.batch_size < 1 or self.micro_batch < 1 or self.lr < 0:
            raise ValueError(f"budget {self}: steps >= 0, batch_size >= 1, micro_batch >= 1 and lr >= 0")


def kd_budget(cfg) -> Budget:
    """Every KD method's budget (`kd.*`)."""
    k = cfg.kd
    return Budget(k.steps, k.lr, k.batch_size, k.warmup_ratio, cfg.train.micro_batch, k.lr_schedule)


def rl_budget(cfg, steps: int | None = None) -> Budget:
    """The RL runs' budget (`rl.*`); `steps` for a run of another length (the teacher's PPO)."""
    r = cfg.rl
    return Budget(r.steps if steps is None else steps, r.actor_lr, r.prompts_per_step, r.actor_warmup_ratio,
                  cfg.train.micro_batch)


def teacher_sft_budget(cfg, n_sequences: int) -> Budget:
    """The teacher's SFT on `n_sequences` oracle trajectories: `teacher.sft_epochs` passes over them."""
    t = cfg.teacher
    return Budget(max(1, math.ceil(t.sft_epochs * n_sequences / t.sft_batch)), t.sft_lr, t.sft_batch,
                  t.sft_warmup_ratio, t.sft_micro_batch or cfg.train.micro_batch)

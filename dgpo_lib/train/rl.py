"""PPO with a critic, DGPO, and the GRPO ablation, on multi-turn Search-R1 rollouts.

One iteration (Search-R1 / DGPO `ray_trainer.fit`; `train_rl`'s `step_fn` calls these in order):
  rollouts (student, T=1)
  ->  `score_rollouts`: EM, old log-probs, reference log-probs where the KL gate is open, values (no grad)
  ->  `advantages`: r_t = EM * 1[last] - beta * gate * (log pi - log pi_ref)  (DGPO: gate = 1[EM=0], ref = teacher),
      then GAE (gamma = lambda = 1) and whitened advantages
  ->  `ppo_update`: PPO-clip actor update (+ entropy bonus), clipped value update.
GRPO (the paper's ablation) is what the authors' code runs when only `algorithm.adv_estimator` changes: no critic;
the same gated k1 KL stays in the token rewards, and each trajectory's advantage is its summed reward
(EM - beta * gate * sum_t k1_t) normalised within its question's group of `rl.grpo_group` rollouts.
"""
from __future__ import annotations

import copy
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from dgpo_lib.config import val_interval
from dgpo_lib.io_utils import best_val_dir
from dgpo_lib.memory import release_memory
from dgpo_lib.env.rollout import Trajectory
from dgpo_lib.methods import RLVariant
from dgpo_lib.models.policy import (
    ValueModel,
    action_logits,
    action_values,
    add_lora,
    logprobs_and_entropy,
    save_policy,
)
from dgpo_lib.train import rl_math as R
from dgpo_lib.train.batching import collate_seqs, length_buckets
from dgpo_lib.train.budget import Budget
from dgpo_lib.train.loop import linear_warmup, run_training
from dgpo_lib.train.phase_clock import NO_CLOCK, PhaseClock

log = logging.getLogger(__name__)


def prompts_per_step(wanted: int, available: int, world: int) -> int:
    """Questions rolled out in one step: `wanted` rounded up to a multiple of the process count (at most the
    largest multiple that `available` allows). Under DDP every backward all-reduces, so every process must make
    the same number of updates; equal shares of prompts give equal shares of trajectories and mini-batches."""
    most = available // world * world
    if most == 0:
        raise ValueError(f"{available} training questions cannot be shared by {world} processes")
    return min(-(-max(wanted, 1) // world) * world, most)


def step_prompts(n: int, per_step: int, step: int, seed: str, order: str) -> list[int]:
    """Indices of the questions step `step` rolls out, a function of the step alone (a resumed run agrees):
    `sample`, a fresh seeded sample each step (questions may repeat across steps); `epochs`, consecutive slices of a
    permutation drawn once per epoch, the left-over questions dropped (verl's shuffled DataLoader, drop_last)."""
    if order == "sample":
        return random.Random(f"{seed}:rl:{step}").sample(range(n), per_step)
    if order == "epochs":
        per_epoch = n // per_step
        epoch, pos = divmod(step, per_epoch)
        perm = list(range(n))
        random.Random(f"{seed}:rl-epoch:{epoch}").shuffle(perm)
        return perm[pos * per_step:(pos + 1) * per_step]
    raise ValueError(f"unknown prompt order {order!r} (rl.prompt_order: sample or epochs)")


def _per_action(trajs, pad_id, micro, need_grad, forward, n_out: int):
    """`forward(batch) -> (n_out flat tensors over the batch's action tokens, the rows' action counts)` run over
    length-bucketed micro-batches of `trajs`; each output padded to [B, A] in the trajectories' order, and the mask."""
    outs, counts = [[None] * len(trajs) for _ in range(n_out)], [0] * len(trajs)
    for idx in length_buckets([len(t.prompt_ids) + len(t.response_ids) for t in trajs], micro):
        b = collate_seqs([trajs[i] for i in idx], pad_id)
        with torch.set_grad_enabled(need_grad):
            flat, cnt = forward(b)
        off = 0
        for i, c in zip(idx, cnt):
            for out, f in zip(outs, flat):
                out[i] = f[off:off + c]
            counts[i] = c
            off += c
    counts_t = torch.tensor(counts, device=outs[0][0].device if trajs else None)  # beside the outputs (GPU)
    padded = [R.to_padded(torch.cat(o) if trajs else torch.zeros(0), counts_t) for o in outs]
    return [p for p, _ in padded], padded[0][1]


def _flat_scores(model, trajs, pad_id, micro, need_grad=False, entropy=False):
    """Per-action-token log-probs and entropies for a list of trajectories, as [B, A] padded tensors, and the mask."""
    def forward(b):
        logits, tgt, cnt = action_logits(model, b)
        return logprobs_and_entropy(logits, tgt), cnt.tolist()
    (lp, ent), mask = _per_action(trajs, pad_id, micro, need_grad, forward, 2)
    return lp, ent, mask


def _values(critic, trajs, pad_id, micro, need_grad=False):
    """The critic's value at each action token, [B, A] padded."""
    def forward(b):
        return (action_values(critic, b),), b.action_mask[:, 1:].sum(1).tolist()
    (values,), _ = _per_action(trajs, pad_id, micro, need_grad, forward, 1)
    return values


def rollout_stats(trajs: Sequence[Trajectory]) -> dict:
    n = max(len(trajs), 1)
    return {"em": sum(t.em for t in trajs) / n,
            "wrong_share": sum(t.em < 0.1 for t in trajs) / n, "searches": sum(t.n_searches for t in trajs) / n,
            "answered": sum(t.answer is not None for t in trajs) / n,
            "response_tokens": sum(sum(t.action_mask) for t in trajs) / n}


@dataclass
class ScoredRollouts:
    """One step's rollouts, scored before any update. `old_lp` [B, A] holds the actor's log-prob of each action
    token when it was sampled (`mask` marks the real ones); `ref_lp` the reference's on the trajectories that pay the
    KL (`gated`) and a copy of `old_lp` elsewhere, so the log-ratio there is 0; `old_v` the critic's values (PPO).
    `teacher_rows`/`teacher_lp`: the teacher's log-probs on some trajectories, for the KL-to-teacher curve."""
    scores: torch.Tensor
    old_lp: torch.Tensor
    ref_lp: torch.Tensor
    mask: torch.Tensor
    old_v: torch.Tensor | None
    gated: list[int]
    teacher_rows: list[int]
    teacher_lp: torch.Tensor


def _logprobs_on(fn, trajs, rows: list[int], fill: torch.Tensor) -> torch.Tensor:
    """fn's log-probs on the trajectories `rows` only, `fill` elsewhere: the reference forward is skipped where its
    value cannot matter (DGPO's correct trajectories pay no KL)."""
    out = fill.clone()
    if rows:
        lp = fn([trajs[i] for i in rows])
        out[rows, : lp.shape[1]] = lp
    return out


@torch.no_grad()
def score_rollouts(setup: RLVariant, trajs: Sequence[Trajectory], actor, critic, ref_logprobs: Callable, teacher,
                   pad: int, micro: int, clock=NO_CLOCK) -> ScoredRollouts:
    """EM per trajectory, then the forward passes the update needs: the actor's log-probs, the reference's where
    the KL gate (`rl_math.kl_penalty_mask`) is open, and the critic's values. `ref_logprobs(trajs)` is the
    reference policy's log-probs (the teacher for DGPO, the starting policy for PPO). `clock` times each forward."""
    dev = next(actor.parameters()).device
    scores = torch.tensor([t.em for t in trajs], dtype=torch.float32, device=dev)
    with clock("actor_logprobs"):
        old_lp, _, mask = _flat_scores(actor, trajs, pad, micro)
    kl_mode = setup.kl_mode if setup.beta > 0 else "none"
    gated = [i for i, g in enumerate(R.kl_penalty_mask(scores, kl_mode).tolist()) if g > 0]
    with clock("reference_logprobs"):
        ref_lp = _logprobs_on(ref_logprobs, trajs, gated, old_lp)
        if setup.reference == "teacher":  # the KL-to-teacher curve: over the trajectories scored
            teacher_rows, teacher_lp = gated, ref_lp
        else:  # logging only: the teacher on a fixed-size sample of the batch
            teacher_rows = list(range(min(len(trajs), 8))) if teacher is not None else []
            teacher_lp = _logprobs_on(lambda t: _flat_scores(teacher, t, pad, micro)[0], trajs, teacher_rows,
                                      old_lp)
    with clock("values"):
        old_v = _values(critic, trajs, pad, micro) if setup.algo == "ppo" else None
    return ScoredRollouts(scores, old_lp, ref_lp, mask, old_v, gated, teacher_rows, teacher_lp)


def advantages(setup: RLVariant, rc, scores, logp, ref_logp, mask, values, group=None, moments=None):
    """One step's advantages from its scored rollouts, the paper's equations in order:
    r_t = EM * 1[t = last] - beta * 1[EM = 0] * (log pi(y_t) - log pi_ref(y_t))    (`rl_math.token_rewards`)
    PPO: A = GAE(r, V) with gamma = lambda = 1, whitened over the batch's action tokens;
    GRPO: A = the summed reward normalised within each question's group (`group` ids), no critic.
    `moments(x, mask)` gives the whitening mean and variance over every process (DDP). Returns (k1, A, returns)."""
    rewards, k1 = R.token_rewards(scores, logp, ref_logp, mask, setup.beta, setup.kl_mode)
    if setup.algo == "ppo":
        adv, returns = R.gae(rewards, values, mask, rc.gamma, rc.lam)
    else:  # verl: the outcome score is the summed token reward, KL penalty included
        adv = R.grpo_advantages(rewards.sum(1), group).unsqueeze(1) * mask
        returns = None
    if rc.whiten_advantages and setup.algo == "ppo":
        adv = R.whiten(adv, mask, *(moments(adv, mask) if moments else ()))
    return k1, adv, returns


def mini_batch_order(n: int, seed: str, epoch: int, shuffle: bool) -> list[int]:
    """The trajectories' order before the batch is cut into mini-batches: shuffled with the step's seed, or as rolled
    out (verl's `actor.shuffle: False`)."""
    order = list(range(n))
    if shuffle:
        random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def micro_batches(lengths: list[int], micro: int, reduction: str) -> list[list[int]]:
    """A mini-batch's micro-batches (indices into it): length buckets for `token_mean` (whose result does not depend
    on how the mini-batch is split), or consecutive groups of `micro` for `micro_batch_mean` (verl's
    `mini_batch.split(ppo_micro_batch_size)`, whose result does)."""
    if reduction == "micro_batch_mean":
        return [list(range(i, min(i + micro, len(lengths)))) for i in range(0, len(lengths), micro)]
    return length_buckets(lengths, micro)


def micro_batch_weights(token_counts: torch.Tensor, reduction: str) -> torch.Tensor:
    """The weight of each micro-batch's token-mean loss in the mini-batch's loss: its share of the mini-batch's
    action tokens (the mini-batch token mean), or 1 / (number of micro-batches) (verl: `loss /
    gradient_accumulation`)."""
    if reduction == "micro_batch_mean":
        return torch.full((len(token_counts),), 1.0 / len(token_counts))
    return token_counts / token_counts.sum().clamp(min=1)


def ppo_update(actor, critic, optims: dict, trajs, *, old_lp, adv, old_v, returns, mask, rc, tc, pad: int,
               micro: int, world: int = 1, seed: str = "", clock=NO_CLOCK) -> tuple[dict, int]:
    """`rl.ppo_epochs` passes over the batch in mini-batches of `rl.mini_batch` trajectories (shuffled, or in order:
    `rl.shuffle_mini_batches`): the clipped policy loss minus the entropy bonus, and (PPO) the clipped value loss,
    each reduced over the mini-batch as `rl.loss_reduction` says (`micro_batch_weights`).
    Returns the mean statistics and the number of optimiser steps; `clock` times the actor's and the critic's
    forward and backward passes and the optimiser (gradient clipping included)."""
    actor.train()
    if critic is not None:
        critic.train()
    stats = {"pg_loss": 0.0, "clipfrac": 0.0, "entropy": 0.0, "vf_loss": 0.0, "vf_clipfrac": 0.0, "approx_kl": 0.0}
    n_updates = 0
    for epoch in range(rc.ppo_epochs):
        order = mini_batch_order(len(trajs), seed, epoch, rc.shuffle_mini_batches)
        mini = max(1, rc.mini_batch // world)  # the same number of updates on every process (DDP)
        for s in range(0, len(order), mini):
            mb = order[s:s + mini]
            for o in optims.values():
                o.zero_grad(set_to_none=True)
            # one backward per micro-batch (activations of one micro-batch in memory at a time), each weighted as
            # rl.loss_reduction says: by its share of the mini-batch's tokens (the mini-batch token mean) or equally
            lengths = [len(trajs[i].prompt_ids) + len(trajs[i].response_ids) for i in mb]
            parts = micro_batches(lengths, micro, rc.loss_reduction)
            weights = micro_batch_weights(torch.stack([mask[[mb[j] for j in p]].sum() for p in parts]),
                                          rc.loss_reduction)
            for part, w in zip(parts, weights):
                ids = [mb[j] for j in part]
                sub = [trajs[i] for i in ids]
                with clock("actor_update"):
                    lp, ent, mm = _flat_scores(actor, sub, pad, len(sub), need_grad=True)
                    A = lp.shape[1]
                    pg, cf, akl = R.ppo_policy_loss(lp, old_lp[ids][:, :A], adv[ids][:, :A], mm, rc.clip)
                    entropy = R.masked_mean(ent, mm)
                    loss = pg - rc.entropy_coef * entropy
                    (loss * w).backward()
                stats["pg_loss"] += (w * pg).item()
                stats["clipfrac"] += (w * cf).item()
                stats["entropy"] += (w * entropy).item()
                stats["approx_kl"] += (w * akl).item()
            if critic is not None:  # its own micro-batches (verl: critic.ppo_micro_batch_size), else the actor's
                cmicro = rc.critic_micro_batch or micro
                cparts = parts if cmicro == micro else micro_batches(lengths, cmicro, rc.loss_reduction)
                cweights = weights if cmicro == micro else micro_batch_weights(
                    torch.stack([mask[[mb[j] for j in p]].sum() for p in cparts]), rc.loss_reduction)
                for part, w in zip(cparts, cweights):
                    ids = [mb[j] for j in part]
                    with clock("critic_update"):
                        v = _values(critic, [trajs[i] for i in ids], pad, len(ids), need_grad=True)
                        A = v.shape[1]
                        vl, vcf = R.value_loss(v, old_v[ids][:, :A], returns[ids][:, :A], mask[ids][:, :A],
                                               rc.value_clip)
                        (vl * w).backward()
                    stats["vf_loss"] += (w * vl).item()
                    stats["vf_clipfrac"] += (w * vcf).item()
            with clock("optimiser"):
                torch.nn.utils.clip_grad_norm_(actor.parameters(), tc.max_grad_norm)
                if critic is not None:
                    torch.nn.utils.clip_grad_norm_(critic.parameters(), tc.max_grad_norm)
                for o in optims.values():
                    o.step()
            n_updates += 1
    return stats, n_updates


def train_rl(setup: RLVariant, actor, tokenizer, critic_init: str | None, teacher, questions: Sequence,
             make_rollout: Callable[[object, list], list[Trajectory]], cfg, budget: Budget, run_dir: Path,
             progress: bool = True, stop_after: int | None = None, out_dir: Path | None = None,
             critic: ValueModel | None = None, val_fn: Callable[[object, int], dict] | None = None) -> list[dict]:
    """Train `actor` (in place) for `budget.steps` iterations of `budget.batch_size` prompts.

    make_rollout(actor, questions) -> trajectories (sampled at the rollout temperature).
    val_fn(actor, step) -> validation metrics of the (unwrapped) actor, every cfg.eval.val_every steps; the actor
    with the best validation EM is saved beside `out_dir` as `<out_dir>_best_val` (checkpoint selection).
    teacher: the teacher model (DGPO's reference; also used to log KL to the teacher for every method)."""
    from accelerate import Accelerator

    rc, tc = cfg.rl, cfg.train
    if setup.beta is None:  # (a variant with its own beta never reads rl.beta: its cache key leaves it out)
        setup = setup.with_beta(rc.beta)
    pad = tokenizer.pad_token_id
    # Under `accelerate launch` each process rolls out its share of the prompts and DDP averages gradients;
    # in a single process `prepare` returns the modules unchanged.
    acc = Accelerator(cpu=not torch.cuda.is_available())
    rank, world = acc.process_index, acc.num_processes
    if setup.reference == "teacher" and teacher is None:
        raise ValueError("reference='teacher' needs a teacher model")
    if tc.lora:
        actor = add_lora(actor, tc.lora_r, tc.lora_alpha)
    reference = teacher
    if setup.reference == "initial":
        # plain PPO: KL to the frozen starting policy (with LoRA: the same weights, adapters off)
        reference = None if tc.lora else copy.deepcopy(actor).eval().requires_grad_(False)
    modules, optims, scheds = {"actor": actor}, {}, {}
    optims["actor"] = torch.optim.AdamW([p for p in actor.parameters() if p.requires_grad], lr=budget.lr)
    scheds["actor"] = linear_warmup(optims["actor"], budget.steps, budget.warmup_ratio, rc.warmup_from_zero)
    if setup.algo == "ppo":
        critic = (critic or ValueModel.from_causal_lm(critic_init, head_std=rc.critic_head_std)).to(
            next(actor.parameters()).device)
        if tc.lora:
            critic.backbone = add_lora(critic.backbone, tc.lora_r, tc.lora_alpha)
        modules["critic"] = critic
        optims["critic"] = torch.optim.AdamW([p for p in critic.parameters() if p.requires_grad], lr=rc.critic_lr)
        scheds["critic"] = linear_warmup(optims["critic"], budget.steps, rc.critic_warmup_ratio,
                                         rc.warmup_from_zero)
    elif setup.algo == "grpo":
        critic = None
    else:
        raise ValueError(f"unknown RL algorithm {setup.algo!r}")
    micro = budget.micro_batch
    plain = dict(modules)  # unwrapped modules: what checkpoints and the final model are made of
    if world > 1:
        actor, *rest = acc.prepare(actor, *( [critic] if critic is not None else []), *optims.values())
        if critic is not None:
            critic, opt_list = rest[0], rest[1:]
        else:
            opt_list = rest
        optims = dict(zip(optims, opt_list))
        if reference is not None and reference is not teacher:
            reference.to(acc.device)
        if teacher is not None:
            teacher.to(acc.device)

    def ref_logprobs(trajs):
        if reference is None:  # LoRA + initial reference: disable adapters
            with acc.unwrap_model(actor).disable_adapter():
                return _flat_scores(actor, trajs, pad, micro)[0]
        return _flat_scores(reference, trajs, pad, micro)[0]

    def step_fn(step: int) -> dict:
        wanted = budget.batch_size
        if setup.algo == "grpo" and rc.grpo_same_trajectories:
            wanted //= rc.grpo_group  # as many trajectories per step as PPO (the authors roll out 512 x 5)
        n_q = prompts_per_step(wanted, len(questions), world)
        qs = [questions[i] for i in step_prompts(len(questions), n_q, step, str(cfg.seed), rc.prompt_order)]
        qs = qs[rank::world]  # this process's share: the same size on every process
        group = None
        dev = next(actor.parameters()).device  # the RL arithmetic runs where the log-probs are
        if setup.algo == "grpo":
            group = torch.arange(len(qs), device=dev).repeat_interleave(rc.grpo_group)
            qs = [q for q in qs for _ in range(rc.grpo_group)]
        t0, clock = time.perf_counter(), PhaseClock()
        actor.eval()
        with clock("rollout"):
            trajs = [t for t in make_rollout(actor, qs)]
        t_roll = clock.seconds["rollout"]
        release_memory()  # the KV caches' memory, before the scoring and the update need theirs
        scored = score_rollouts(setup, trajs, actor, critic, ref_logprobs, teacher, pad, micro, clock)
        old_lp, mask, old_v, gated = scored.old_lp, scored.mask, scored.old_v, scored.gated
        with torch.no_grad():
            moments = (lambda x, m: _global_moments(acc, x, m)) if world > 1 else None
            k1, adv, returns = advantages(setup, rc, scored.scores, old_lp, scored.ref_lp, mask, old_v, group, moments)
        stats, n_updates = ppo_update(actor, critic, optims, trajs, old_lp=old_lp, adv=adv, old_v=old_v,
                                      returns=returns, mask=mask, rc=rc, tc=tc, pad=pad, micro=micro, world=world,
                                      seed=f"{cfg.seed}:rl:{step}", clock=clock)
        for sc in scheds.values():
            sc.step()
        actor.eval()
        release_memory()  # the update's activations and gradients, before the next rollout
        n_tok = float(mask.sum())
        m = {**rollout_stats(trajs), **{k: v / max(n_updates, 1) for k, v in stats.items()},
             "kl_ref": float(R.masked_mean(k1[gated], mask[gated])) if gated else 0.0,
             "tokens_per_s": n_tok / max(time.perf_counter() - t0, 1e-9), "rollout_s": t_roll,
             "rollouts": float(len(trajs) * world),  # trajectories this step, every process's together
             "sequence_tokens": float(sum(len(t.prompt_ids) + len(t.response_ids) for t in trajs)),
             **clock.metrics()}
        if teacher is not None:  # always present, so every DDP process reduces the same keys; NaN = not scored
            tr = scored.teacher_rows
            m["kl_teacher"] = float(R.masked_mean(old_lp[tr] - scored.teacher_lp[tr], mask[tr])) \
                if tr else float("nan")
        if world > 1:  # metrics are means over every process's rollouts
            keys = sorted(m)
            vals = acc.reduce(torch.tensor([m[k] for k in keys], device=acc.device), "mean")
            m = dict(zip(keys, vals.tolist()))
        return m

    rows = run_training(run_dir, budget.steps, step_fn, plain, optims, scheds, save_every=tc.save_every,
                        desc=f"{setup.algo}", progress=progress and acc.is_main_process, stop_after=stop_after,
                        is_main=acc.is_main_process, barrier=acc.wait_for_everyone,
                        val_fn=(lambda step: val_fn(acc.unwrap_model(actor), step)) if val_fn else None,
                        val_every=val_interval(cfg, budget.steps),
                        on_best=(lambda step, row: save_best(acc.unwrap_model(actor), tokenizer, out_dir, step, row))
                        if out_dir is not None else None)
    actor.eval()
    if out_dir is not None and (stop_after is None or stop_after >= budget.steps) and acc.is_main_process:
        save_policy(acc.unwrap_model(actor), tokenizer, out_dir)
    acc.wait_for_everyone()
    return rows


def save_best(model, tokenizer, out_dir: Path, step: int, row: dict) -> None:
    from dgpo_lib.io_utils import atomic_write_json
    folder = best_val_dir(out_dir)
    save_policy(model, tokenizer, folder)
    atomic_write_json(folder / "selected.json", {"step": step, **row})


def _global_moments(acc, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of `x` over the action tokens of every process (advantage whitening under DDP)."""
    m = mask.to(x.dtype)
    stats = acc.reduce(torch.stack([(x * m).sum(), (x * x * m).sum(), m.sum()]).to(acc.device), "sum").cpu()
    mean = stats[0] / stats[2].clamp(min=1)
    return mean, stats[1] / stats[2].clamp(min=1) - mean ** 2

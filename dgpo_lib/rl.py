"""PPO with a critic, DGPO, and the GRPO ablation, on multi-turn Search-R1 rollouts.

One iteration (Search-R1 / DGPO `ray_trainer.fit`):
  rollouts (student, T=1)  ->  old log-probs, reference log-probs, values (no grad)
  ->  r_t = EM * 1[last] - beta * gate * (log pi - log pi_ref)      (DGPO: gate = 1[EM=0], ref = teacher)
  ->  GAE (gamma = lambda = 1), whitened advantages
  ->  PPO-clip actor update (+ entropy bonus), clipped value update.
GRPO replaces the critic by group-normalised outcome advantages and puts the (gated) KL into the loss (k3).
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

from . import rl_math as R
from .kd import length_buckets
from .policy import ValueModel, action_logits, add_lora, logprobs_and_entropy, save_policy
from .rollout import Trajectory, collate_trajectories
from .train_loop import linear_warmup, run_training

log = logging.getLogger(__name__)


@dataclass
class RLSetup:
    algo: str = "ppo"  # ppo (critic + GAE) or grpo
    kl_mode: str = "selective"
    beta: float = 1e-3
    reference: str = "teacher"  # teacher or initial


def _flat_scores(model, trajs, pad_id, micro, need_grad=False, entropy=False):
    """Per-action-token log-probs (and entropies) for a list of trajectories, as [B, A] padded tensors."""
    lps, ents, counts = [None] * len(trajs), [None] * len(trajs), [0] * len(trajs)
    for idx in length_buckets([len(t.prompt_ids) + len(t.response_ids) for t in trajs], micro):
        b = collate_trajectories([trajs[i] for i in idx], pad_id)
        with torch.set_grad_enabled(need_grad):
            logits, tgt, cnt = action_logits(model, b)
            lp, ent = logprobs_and_entropy(logits, tgt)
        for j, (i, c) in enumerate(zip(idx, cnt.tolist())):
            off = int(cnt[:j].sum())
            lps[i], ents[i], counts[i] = lp[off:off + c], ent[off:off + c], c
    counts_t = torch.tensor(counts)
    lp_pad, mask = R.to_padded(torch.cat(lps) if lps else torch.zeros(0), counts_t)
    ent_pad, _ = R.to_padded(torch.cat(ents) if ents else torch.zeros(0), counts_t)
    return lp_pad, ent_pad, mask


def _values(critic, trajs, pad_id, micro, need_grad=False):
    vals, counts = [None] * len(trajs), [0] * len(trajs)
    for idx in length_buckets([len(t.prompt_ids) + len(t.response_ids) for t in trajs], micro):
        b = collate_trajectories([trajs[i] for i in idx], pad_id)
        with torch.set_grad_enabled(need_grad):
            v = critic.action_values(b)
        cnt = b.action_mask[:, 1:].sum(1).tolist()
        off = 0
        for i, c in zip(idx, cnt):
            vals[i], counts[i] = v[off:off + c], c
            off += c
    return R.to_padded(torch.cat(vals), torch.tensor(counts))[0]


def rollout_stats(trajs: Sequence[Trajectory]) -> dict:
    n = max(len(trajs), 1)
    return {"em": sum(t.em for t in trajs) / n, "reward": sum(t.em for t in trajs) / n,
            "wrong_share": sum(t.em < 0.1 for t in trajs) / n, "searches": sum(t.n_searches for t in trajs) / n,
            "answered": sum(t.answer is not None for t in trajs) / n,
            "response_tokens": sum(sum(t.action_mask) for t in trajs) / n}


def train_rl(setup: RLSetup, actor, tokenizer, critic_init: str | None, teacher, questions: Sequence,
             make_rollout: Callable[[object, list], list[Trajectory]], cfg, run_dir: Path,
             progress: bool = True, stop_after: int | None = None, out_dir: Path | None = None,
             critic: ValueModel | None = None) -> list[dict]:
    """Train `actor` (in place) for cfg.rl.steps iterations.

    make_rollout(actor, questions) -> trajectories (sampled at the rollout temperature).
    teacher: the teacher model (DGPO's reference; also used to log KL to the teacher for every method)."""
    rc, tc = cfg.rl, cfg.train
    pad = tokenizer.pad_token_id
    if setup.reference == "teacher" and teacher is None:
        raise ValueError("reference='teacher' needs a teacher model")
    if tc.lora:
        actor = add_lora(actor, tc.lora_r, tc.lora_alpha)
    reference = teacher
    if setup.reference == "initial":
        # plain PPO: KL to the frozen starting policy (with LoRA: the same weights, adapters off)
        reference = None if tc.lora else copy.deepcopy(actor).eval().requires_grad_(False)
    modules, optims, scheds = {"actor": actor}, {}, {}
    optims["actor"] = torch.optim.AdamW([p for p in actor.parameters() if p.requires_grad], lr=rc.actor_lr)
    scheds["actor"] = linear_warmup(optims["actor"], rc.steps, rc.actor_warmup_ratio)
    if setup.algo == "ppo":
        critic = critic or ValueModel.from_causal_lm(critic_init)
        if tc.lora:
            critic.backbone = add_lora(critic.backbone, tc.lora_r, tc.lora_alpha)
        modules["critic"] = critic
        optims["critic"] = torch.optim.AdamW([p for p in critic.parameters() if p.requires_grad], lr=rc.critic_lr)
        scheds["critic"] = linear_warmup(optims["critic"], rc.steps, rc.critic_warmup_ratio)
    elif setup.algo == "grpo":
        critic = None
    else:
        raise ValueError(f"unknown RL algorithm {setup.algo!r}")
    micro = tc.micro_batch

    def ref_logprobs(trajs):
        if reference is None:  # LoRA + initial reference: disable adapters
            with actor.disable_adapter():
                return _flat_scores(actor, trajs, pad, micro)[0]
        return _flat_scores(reference, trajs, pad, micro)[0]

    def step_fn(step: int) -> dict:
        rng = random.Random(f"{cfg.seed}:rl:{step}")
        n_q = rc.prompts_per_step // (rc.grpo_group if setup.algo == "grpo" else 1)
        qs = [questions[i] for i in rng.sample(range(len(questions)), min(max(n_q, 1), len(questions)))]
        group = None
        if setup.algo == "grpo":
            group = torch.arange(len(qs)).repeat_interleave(rc.grpo_group)
            qs = [q for q in qs for _ in range(rc.grpo_group)]
        t0 = time.perf_counter()
        actor.eval()
        trajs = [t for t in make_rollout(actor, qs)]
        t_roll = time.perf_counter() - t0
        keep = [i for i, t in enumerate(trajs) if sum(t.action_mask) > 0]
        trajs = [trajs[i] for i in keep]
        if group is not None:
            group = group[keep]
        scores = torch.tensor([t.em for t in trajs], dtype=torch.float32)
        with torch.no_grad():
            old_lp, _, mask = _flat_scores(actor, trajs, pad, micro)
            ref_lp = ref_logprobs(trajs)
            teach_lp = ref_lp if setup.reference == "teacher" else (
                _flat_scores(teacher, trajs, pad, micro)[0] if teacher is not None else None)
            rewards, k1 = R.token_rewards(scores, old_lp, ref_lp, mask, setup.beta,
                                          setup.kl_mode if setup.algo == "ppo" else "none")
            if setup.algo == "ppo":
                old_v = _values(critic, trajs, pad, micro)
                adv, returns = R.gae(rewards, old_v, mask, rc.gamma, rc.lam)
            else:
                adv = R.grpo_advantages(scores, group).unsqueeze(1) * mask
                returns = old_v = None
            if rc.whiten_advantages and setup.algo == "ppo":
                adv = R.whiten(adv, mask)
        actor.train()
        if critic is not None:
            critic.train()
        stats = {"pg_loss": 0.0, "clipfrac": 0.0, "entropy": 0.0, "vf_loss": 0.0, "vf_clipfrac": 0.0,
                 "approx_kl": 0.0, "kl_loss": 0.0}
        n_updates = 0
        order = list(range(len(trajs)))
        for epoch in range(rc.ppo_epochs):
            random.Random(f"{cfg.seed}:rl:{step}:{epoch}").shuffle(order)
            for s in range(0, len(order), rc.mini_batch):
                mb = order[s:s + rc.mini_batch]
                sub = [trajs[i] for i in mb]
                mmask = mask[mb][:, : max(1, int(mask[mb].sum(1).max()))]
                A = mmask.shape[1]
                for o in optims.values():
                    o.zero_grad(set_to_none=True)
                lp, ent, _ = _flat_scores(actor, sub, pad, micro, need_grad=True)
                lp, ent = lp[:, :A], ent[:, :A]
                pg, cf, akl = R.ppo_policy_loss(lp, old_lp[mb][:, :A], adv[mb][:, :A], mmask, rc.clip)
                entropy = R.masked_mean(ent, mmask)
                loss = pg - rc.entropy_coef * entropy
                if setup.algo == "grpo" and setup.kl_mode != "none" and setup.beta > 0:
                    gate = R.kl_penalty_mask(scores[mb], setup.kl_mode).unsqueeze(1)
                    kl_loss = R.masked_mean(R.k3(lp, ref_lp[mb][:, :A]) * gate, mmask)
                    loss = loss + setup.beta * kl_loss
                    stats["kl_loss"] += kl_loss.item()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(actor.parameters(), tc.max_grad_norm)
                if critic is not None:
                    v = _values(critic, sub, pad, micro, need_grad=True)[:, :A]
                    vl, vcf = R.value_loss(v, old_v[mb][:, :A], returns[mb][:, :A], mmask, rc.value_clip)
                    vl.backward()
                    torch.nn.utils.clip_grad_norm_(critic.parameters(), tc.max_grad_norm)
                    stats["vf_loss"] += vl.item()
                    stats["vf_clipfrac"] += vcf.item()
                for o in optims.values():
                    o.step()
                stats["pg_loss"] += pg.item()
                stats["clipfrac"] += cf.item()
                stats["entropy"] += entropy.item()
                stats["approx_kl"] += akl.item()
                n_updates += 1
        for sc in scheds.values():
            sc.step()
        actor.eval()
        n_tok = float(mask.sum())
        m = {**rollout_stats(trajs), **{k: v / max(n_updates, 1) for k, v in stats.items()},
             "kl_ref": float(R.masked_mean(k1, mask)),
             "tokens_per_s": n_tok / max(time.perf_counter() - t0, 1e-9), "rollout_s": t_roll}
        if teach_lp is not None:
            m["kl_teacher"] = float(R.masked_mean(old_lp - teach_lp, mask))
        return m

    rows = run_training(run_dir, rc.steps, step_fn, modules, optims, scheds, save_every=tc.save_every,
                        desc=f"{setup.algo}", progress=progress, stop_after=stop_after)
    actor.eval()
    if out_dir is not None and (stop_after is None or stop_after >= rc.steps):
        save_policy(actor, tokenizer, out_dir)
    return rows

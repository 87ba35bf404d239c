"""The RL arithmetic of PPO / DGPO / GRPO as pure functions on padded per-trajectory tensors.

Layout: [B, A] where A indexes a trajectory's *action tokens* (the tokens the model generated), in order;
`mask[b, a]` is 1 for real tokens. Retrieved tokens are not in this layout at all, so they cannot enter the
policy loss, the value loss, the KL penalty or the advantages.

Where this differs from Search-R1's verl: verl runs GAE over every response token, `<information>` ones included,
whitens the advantages over all of them and trains the critic on them (their policy loss is masked, as here). With
gamma = lambda = 1 a token's advantage is the return minus the token's value either way, so the raw advantages of
model tokens agree given the same values; what differs is (1) the whitening moments, taken here over model tokens
only (retrieved tokens are most of a response at this scale, and are not actions), and (2) the critic, which here
learns values only where the policy acts. Both are this project's choice, kept in every preset.
"""
from __future__ import annotations

import torch


def to_padded(flat: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatter a flat per-token vector (rows concatenated) into [B, A] plus its mask."""
    B, A = len(counts), int(counts.max()) if len(counts) else 0
    out = flat.new_zeros((B, A))
    mask = torch.zeros((B, A), dtype=torch.bool, device=flat.device)
    pos = torch.arange(A, device=flat.device).unsqueeze(0) < counts.unsqueeze(1)
    out[pos] = flat
    mask[pos] = True
    return out, mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor, mean: torch.Tensor | None = None, var: torch.Tensor | None = None,
           eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries; pass global moments when the batch is split across processes."""
    mean = masked_mean(x, mask) if mean is None else mean
    var = masked_mean((x - mean) ** 2, mask) if var is None else var
    return ((x - mean) * torch.rsqrt(var + eps)) * mask


def kl_penalty_mask(scores: torch.Tensor, mode: str) -> torch.Tensor:
    """Which trajectories pay the KL-in-reward: DGPO's 'selective' = only wrong ones (score < 0.1, as the
    authors' `create_reward_based_mask`); 'always' = plain PPO's KL on every sample; 'none' = no penalty."""
    if mode == "selective":
        return (scores < 0.1).to(scores.dtype)
    if mode == "always":
        return torch.ones_like(scores)
    if mode == "none":
        return torch.zeros_like(scores)
    raise ValueError(f"unknown kl mode {mode!r}")


def token_rewards(scores: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                  beta: float, kl_mode: str = "selective") -> tuple[torch.Tensor, torch.Tensor]:
    """r_t = score * 1[t = last token] - beta * gate(score) * (log pi(y_t) - log pi_ref(y_t)).

    DGPO: gate = 1[EM = 0] and pi_ref = the teacher; correct trajectories get the EM reward alone.
    Returns (rewards [B, A], k1 [B, A]) with zeros on padding."""
    k1 = (logp - ref_logp) * mask
    gate = kl_penalty_mask(scores, kl_mode).unsqueeze(1)
    r = -beta * gate * k1
    last = mask.long().sum(1) - 1
    rows = torch.arange(len(scores), device=scores.device)
    has = last >= 0
    r[rows[has], last[has]] += scores[has].to(r.dtype)
    return r * mask, k1


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation along each trajectory's action tokens; V after the last token is 0.
    Returns (advantages, returns = advantages + values)."""
    B, A = rewards.shape
    adv = torch.zeros_like(rewards)
    last = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    m = mask.to(rewards.dtype)
    for a in reversed(range(A)):
        next_v = values[:, a + 1] * m[:, a + 1] if a + 1 < A else torch.zeros_like(last)
        delta = rewards[:, a] + gamma * next_v - values[:, a]
        last = (delta + gamma * lam * last * (m[:, a + 1] if a + 1 < A else 0)) * m[:, a]
        adv[:, a] = last
    return adv, (adv + values) * m


def ppo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                    clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped surrogate, token mean over the mask. Returns (loss, clip fraction, approx KL old->new)."""
    ratio = torch.exp(logp - old_logp)
    pg1 = -adv * ratio
    pg2 = -adv * ratio.clamp(1 - clip, 1 + clip)
    loss = masked_mean(torch.maximum(pg1, pg2), mask)
    clipfrac = masked_mean((pg2 > pg1).float(), mask)
    approx_kl = masked_mean(old_logp - logp, mask)
    return loss, clipfrac, approx_kl


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """0.5 * max((V - R)^2, (clip(V, V_old +- c) - R)^2), token mean. Returns (loss, clipped fraction)."""
    vc = old_values + (values - old_values).clamp(-clip, clip)
    l1, l2 = (values - returns) ** 2, (vc - returns) ** 2
    return 0.5 * masked_mean(torch.maximum(l1, l2), mask), masked_mean((l2 > l1).float(), mask)


def grpo_advantages(scores: torch.Tensor, group: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(score - group mean) / (group std + eps), one value per trajectory, as verl's
    `compute_grpo_outcome_advantage` (unbiased std; a group of one keeps its score: mean 0, std 1)."""
    adv = torch.zeros_like(scores)
    for g in group.unique():
        idx = group == g
        s = scores[idx]
        if s.numel() == 1:
            adv[idx] = s / (1 + eps)
        else:
            adv[idx] = (s - s.mean()) / (s.std(unbiased=True) + eps)
    return adv

"""Distillation losses as pure functions on logits.

Per-token functions take student logits `s` and teacher logits `t` of shape [..., V] and return [...]. The
trainers call them only at the positions that predict a model-generated token (`policy.action_logits` drops the
prompt and the retrieved `<information>` tokens before any loss is computed, so those get exactly zero gradient).
Everything is computed in float32.

Notation: p_S = softmax(s), p_T = softmax(t); KL(p||q) = sum_v p_v (log p_v - log q_v).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F


def _ls(x: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(x.float(), dim=-1)


def _kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p||q) from log-probabilities, per position."""
    return (logp.exp() * (logp - logq)).sum(-1)


def forward_kl(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """KD / DGPO cold start: KL(p_T || p_S) = sum_v p_T (log p_T - log p_S).
    (TAID's `forward_kl` drops the teacher-entropy term; the gradient is the same.)"""
    return _kl(_ls(t), _ls(s))


def reverse_kl(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """KL(p_S || p_T) = sum_v p_S (log p_S - log p_T)."""
    return _kl(_ls(s), _ls(t))


def generalized_jsd(s: torch.Tensor, t: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """GKD: JSD_beta = beta KL(p_T || M) + (1 - beta) KL(p_S || M), M = beta p_T + (1 - beta) p_S.
    beta -> 0 behaves like forward KL and beta -> 1 like reverse KL (after rescaling by 1/beta or 1/(1-beta));
    at the endpoints themselves we return the limit, as TRL does: beta=0 forward KL, beta=1 reverse KL."""
    ls, lt = _ls(s), _ls(t)
    if beta <= 0:
        return _kl(lt, ls)
    if beta >= 1:
        return _kl(ls, lt)
    lm = torch.logsumexp(torch.stack([lt + math.log(beta), ls + math.log(1 - beta)]), dim=0)
    return beta * _kl(lt, lm) + (1 - beta) * _kl(ls, lm)


def skew_forward_kl(s: torch.Tensor, t: torch.Tensor, alpha: float = 0.1) -> torch.Tensor:
    """DistiLLM SKL_alpha = KL(p_T || alpha p_T + (1 - alpha) p_S); the gradient flows through the mixture."""
    ls, lt = _ls(s), _ls(t)
    lm = torch.logsumexp(torch.stack([lt + math.log(alpha), ls + math.log(1 - alpha)]), dim=0)
    return _kl(lt, lm)


def skew_reverse_kl(s: torch.Tensor, t: torch.Tensor, alpha: float = 0.1) -> torch.Tensor:
    """DistiLLM SRKL_alpha = KL(p_S || (1 - alpha) p_T + alpha p_S)."""
    ls, lt = _ls(s), _ls(t)
    lm = torch.logsumexp(torch.stack([lt + math.log(1 - alpha), ls + math.log(alpha)]), dim=0)
    return _kl(ls, lm)


def taid_target_logits(s: torch.Tensor, t: torch.Tensor, t_interp: float) -> torch.Tensor:
    """TAID's moving target in logit space: (1 - t) stopgrad(s) + t * t_logits."""
    return (1 - t_interp) * s.detach().float() + t_interp * t.float()


def taid_loss(s: torch.Tensor, t: torch.Tensor, t_interp: float = 0.4) -> torch.Tensor:
    """TAID: KL(p_t || p_S) with p_t = softmax((1 - t) stopgrad(s) + t z_T); t rises towards 1 (TAIDSchedule)."""
    return _kl(_ls(taid_target_logits(s, t, t_interp)), _ls(s))


def token_nll(s: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """SeqKD / SFT: -log p_S(y_t), the hard-label cross-entropy on the teacher's text."""
    return -_ls(s).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


class TAIDSchedule:
    """TAID's adaptive interpolation: t rises linearly from t_start to t_end with the training progress, and
    faster while the loss falls quickly (momentum of the relative loss change, step size alpha). As SakanaAI's
    `TAID.update_t`: called after each step's loss with that step's index (0-based, before the optimiser's step
    counter advances); the first call only records the loss and leaves t at t_start."""

    def __init__(self, t_start=0.4, t_end=1.0, alpha=5e-4, beta=0.99, total_steps=1):
        self.t_start, self.t_end, self.alpha, self.beta, self.total = t_start, t_end, alpha, beta, max(total_steps, 1)
        self.t, self.m, self.prev_loss = t_start, 0.0, None

    def update(self, step: int, loss: float) -> float:
        if self.prev_loss is None:
            self.prev_loss = loss
            return self.t
        rel = (self.prev_loss - loss) / (self.prev_loss + 1e-15)
        self.m = self.beta * self.m + (1 - self.beta) * rel
        self.prev_loss = loss
        target = self.t_start + (self.t_end - self.t_start) * min(1.0, step / self.total)
        adaptive = self.t + self.alpha / (1 + math.exp(-self.m)) * (1 - self.t)
        self.t = min(self.t_end, max(target, adaptive))
        return self.t

    def state_dict(self) -> dict:
        return {"t": self.t, "m": self.m, "prev_loss": self.prev_loss}

    def load_state_dict(self, d: dict) -> None:
        self.t, self.m, self.prev_loss = d["t"], d["m"], d["prev_loss"]


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

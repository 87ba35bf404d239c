"""How hard each KD divergence pulls a student towards a token the teacher is sure of, when the student gives that
token almost no probability (as an untrained student gives the protocol's tags): the gradient of the loss with
respect to the student's logit of that token. Bounded divergences (skew KL, JSD) pull with a small fraction of
forward KL's force there, which is why a cold student trained with them may never start writing the tags."""
from __future__ import annotations

import math
from typing import Callable

import torch


def one_token_logits(p_token: float, vocab: int) -> torch.Tensor:
    """Logits (1 x vocab) giving token 0 probability `p_token` and the rest of the vocabulary equal shares."""
    rest = (1.0 - p_token) / (vocab - 1)
    z = torch.full((1, vocab), math.log(rest), dtype=torch.float64)
    z[0, 0] = math.log(p_token)
    return z


def pull(loss: Callable, student_p: float, teacher_p: float = 0.98, vocab: int = 49152) -> float:
    """|d loss / d z_student[token]| for the teacher's token, given the student's probability of it."""
    s = one_token_logits(student_p, vocab).requires_grad_(True)
    t = one_token_logits(teacher_p, vocab)
    loss(s, t).sum().backward()
    return abs(float(s.grad[0, 0]))


def relative_pull(losses: dict[str, Callable], student_ps, teacher_p: float = 0.98, vocab: int = 49152):
    """{loss name: {student probability: pull relative to forward KL's}} (forward KL is the first of `losses`)."""
    names = list(losses)
    base = {p: pull(losses[names[0]], p, teacher_p, vocab) for p in student_ps}
    return {n: {p: pull(f, p, teacher_p, vocab) / base[p] for p in student_ps} for n, f in losses.items()}

"""Linear-layer FLOPs per token of each training step: 2 per weight for a forward pass, 4 more for a backward
(attention scores and the vocabulary head at the kept positions are not counted). `benchmarks/training.py` divides
them by time for model-FLOPs utilisation; the performance chapter compares an RL update with a KD step by them."""
from __future__ import annotations

# per token: (multiple of the student's linear weights, multiple of the teacher's), keyed by the benchmark's step name
STEP_FLOPS = {
    # student forward + backward; the unpruned base (the teacher's size at the cpu preset) forward for its logits
    "Healing": (6, 2),
    "Teacher SFT (full)": (0, 6),
    "SeqKD (full)": (6, 0),
    # student forward + backward, teacher forward for its logits
    **{f"{m} (full)": (6, 2) for m in ("KD", "GKD", "DistiLLM", "TAID")},
    # one PPO epoch: the actor's forward for the old log-probs (2) and the critic's for the old values (2), then
    # both models' forward + backward (6 + 6); the teacher's forward as DGPO's reference (on the wrong trajectories
    # only, counted on all: an upper bound when some are right)
    "DGPO update (full)": (16, 2),
    "TRL SFTTrainer (full)": (6, 0),
}


def flops_per_token(step: str, student_weights: int, teacher_weights: int) -> float | None:
    """Linear-layer FLOPs per token of `step` (a key of STEP_FLOPS), or None for a step it does not count (LoRA)."""
    if step not in STEP_FLOPS:
        return None
    s, t = STEP_FLOPS[step]
    return s * student_weights + t * teacher_weights

"""Training: sequences and micro-batches, the KD losses and trainer, the RL arithmetic and trainer (PPO, DGPO,
GRPO), the pruned student's healing, the resumable loop and the teacher's trajectories (TGO)."""

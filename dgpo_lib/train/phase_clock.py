"""Wall time per phase of a training step (rollout, the actor's and the reference's log-probs, the critic's values,
the actor's and the critic's updates, the optimiser), so a step's metrics say where its time went."""
from __future__ import annotations

import time
from contextlib import contextmanager

import torch

RL_PHASES = ("rollout", "actor_logprobs", "reference_logprobs", "values", "actor_update", "critic_update",
             "optimiser")


class PhaseClock:
    """`with clock("values"): ...` adds the block's wall seconds to phase `values`. On a GPU the clock waits for the
    queued kernels at both ends, or a phase would be charged for the previous one's work."""

    def __init__(self, phases: tuple[str, ...] = RL_PHASES):
        self.seconds = dict.fromkeys(phases, 0.0)

    @contextmanager
    def __call__(self, phase: str):
        if phase not in self.seconds:
            raise KeyError(f"unknown phase {phase!r}: expected one of {', '.join(self.seconds)}")
        _sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            _sync()
            self.seconds[phase] += time.perf_counter() - t0

    def metrics(self) -> dict[str, float]:
        """`phase_<name>_s` for every phase, zero where it did not run (every process reports the same keys)."""
        return {f"phase_{k}_s": v for k, v in self.seconds.items()}


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class _NoClock:
    """A clock that measures nothing: what the scoring and update functions use when not given one."""

    @contextmanager
    def __call__(self, phase: str):
        yield


NO_CLOCK = _NoClock()

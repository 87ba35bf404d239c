"""One process-wide knob for the matmul precision of every forward pass (generation, scoring, training).

On CPUs with AVX512-BF16 (and on GPUs) bf16 autocast runs the model faster while the weights, optimiser
state and losses stay float32; `Run` sets it from `models.compute_dtype`. Tests keep float32.
"""
from __future__ import annotations

import contextlib

import torch

_DTYPE = {"name": "float32"}


def set_compute_dtype(name: str) -> None:
    if name not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"compute dtype must be float32, bfloat16 or float16, got {name!r}")
    _DTYPE["name"] = name


def compute_dtype() -> str:
    return _DTYPE["name"]


def amp(device_type: str | None = None):
    """Autocast context for the configured dtype (a no-op for float32)."""
    name = _DTYPE["name"]
    if name == "float32":
        return contextlib.nullcontext()
    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.autocast(device_type, dtype=getattr(torch, name))

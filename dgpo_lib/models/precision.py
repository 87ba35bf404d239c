"""One process-wide knob for the matmul precision of every forward pass (generation, scoring, training).

On CPUs with AVX512-BF16 or AMX (and on GPUs) bf16 autocast runs the model faster while the weights, optimiser
state and losses stay float32; `Run` sets it from `models.compute_dtype`. Tests keep float32. On a CPU without
them (AVX2 only) bfloat16 is emulated and several times *slower* than float32 (measured: MiniLM encodes 4 against
15 passages/s, a SmolLM2-sized forward takes 11 s against 1.9 s), so the presets say `auto`: `resolve_dtype`
turns it into bfloat16 where the hardware has it and float32 elsewhere, once, when the config is loaded.
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

_DTYPE = {"name": "float32"}


@functools.lru_cache(maxsize=None)
def native_bf16(device_type: str | None = None) -> bool:
    """Whether bfloat16 matmuls run in hardware on `device_type` (default: cuda when present, else cpu)."""
    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:  # private helpers, present since torch 2.1; /proc/cpuinfo when they are not
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        info = Path("/proc/cpuinfo")
        flags = info.read_text().split() if info.exists() else []
        return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(name: str, device_type: str | None = None) -> str:
    """`auto` -> bfloat16 where the hardware has it, else float32; any other name unchanged."""
    if name != "auto":
        return name
    return "bfloat16" if native_bf16(device_type) else "float32"


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

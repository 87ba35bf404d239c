"""Shared helpers of the benchmark scripts: machine limits, timing, JSON output with provenance."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dgpo_lib.io_utils import atomic_write_json, provenance  # noqa: E402

# where the JSON goes: the committed benchmarks/results/, or a folder of its own (the device check's, a test's)
RESULTS = Path(os.environ.get("DGPO_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # where the pipeline puts its models (Run.device)


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def matmul_flops(dtype=torch.float32, n: int | None = None, reps: int = 10) -> float:
    """Sustained GEMM FLOP/s of the device the models run on, for `dtype` (what their matmuls can reach at best)."""
    n = n or (8192 if DEVICE == "cuda" else 2048)
    a, b = (torch.randn(n, n, dtype=dtype, device=DEVICE) for _ in range(2))
    a @ b
    _sync()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync()
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def memory_bandwidth(mb: int = 512, reps: int = 5) -> float:
    """Bytes/s of a large copy (read + write) on the models' device, the bound of a decode step that streams all
    weights."""
    x = torch.empty(mb * 2 ** 20 // 4, dtype=torch.float32, device=DEVICE)
    y = torch.empty_like(x)
    y.copy_(x)
    _sync()
    t = time.perf_counter()
    for _ in range(reps):
        y.copy_(x)
    _sync()
    return 2 * x.numel() * 4 * reps / (time.perf_counter() - t)


def decode_limit(n_params: int, batch: int, flops: float, bandwidth: float, bytes_per_param: int) -> float:
    """Upper bound on generated tokens/s: each step streams the weights once and does 2*P FLOPs per sequence."""
    step_compute = 2 * n_params * batch / flops
    step_memory = n_params * bytes_per_param / bandwidth
    return batch / max(step_compute, step_memory)


def write(name: str, payload: dict, cfg=None) -> Path:
    out = RESULTS / f"{name}.json"
    atomic_write_json(out, {**payload, "provenance": provenance(cfg)})
    print(f"wrote {out}")
    return out


def table(rows: list[dict], cols: list[str]) -> str:
    w = {c: max(len(c), *(len(f"{r.get(c, ''):.4g}" if isinstance(r.get(c), float) else str(r.get(c, '')))
                          for r in rows)) for c in cols}
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = [" | ".join(c.ljust(w[c]) for c in cols), "-+-".join("-" * w[c] for c in cols)]
    lines += [" | ".join(fmt(r.get(c, "")).ljust(w[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def dump(obj) -> str:
    return json.dumps(obj, indent=2, default=str)

"""Atomic file writes, provenance stamps and seeding: every results file goes through here."""
from __future__ import annotations

import functools
import json
import os
import platform
import random
import subprocess
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "faiss-cpu",
            "numpy")


@contextmanager
def atomic_path(path: str | Path, mode: str = "w", encoding: str | None = "utf-8"):
    """Yield a file object on a temp file next to `path`; rename over `path` only if the block succeeds.
    A kill mid-write leaves the old file (or none), never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_once(out: str | Path, done: Callable[[], bool], write: Callable[[], None]) -> Path:
    """`write()` the cache folder `out` unless `done()` says it is built. Builders take turns on an exclusive lock
    (`<out>.lock`, released when the process ends however it ends), so processes that need the same folder at once
    (parallel test workers, two runs sharing `cache/`) build it once: the others wait, then find it built. A built
    folder is returned without the lock, so a read-only cache still loads."""
    import fcntl

    out = Path(out)
    if not done():
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out.with_name(out.name + ".lock"), "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            if not done():
                write()
    return out


@contextmanager
def atomic_dir(out: str | Path):
    """Yield a temp folder beside `out`; on success it replaces `out` in one rename (a model or dataset folder
    is either complete or absent, never half-written). Each writer has its own temp folder, named with its process
    id, so two processes writing the same folder never delete each other's files; the temp folders of writers that
    died (a killed process) are removed by the next writer. If another writer's complete folder lands in between,
    the last rename wins, and one that cannot replace it keeps the other's."""
    import shutil
    import tempfile

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f"{out.name}.tmp-*"):  # left by a writer that was killed
        pid = stale.name[len(out.name) + 5:].partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # as mkdir would make it (mkdtemp's is owner-only)
    try:
        yield tmp
        shutil.rmtree(out, ignore_errors=True)
        try:
            tmp.rename(out)
        except OSError:
            if not out.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when the rename succeeded


def _alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, default=str)
        f.write("\n")


def atomic_write_jsonl(path: str | Path, rows) -> None:
    """One JSON object a line; a `.gz` path is gzipped with a fixed timestamp, so the same rows give the same
    bytes (committed data files stay byte-stable across rebuilds)."""
    if str(path).endswith(".gz"):
        import gzip
        with atomic_path(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
            for r in rows:
                gz.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
        return
    with atomic_path(path) as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one line (metrics logs); a torn last line is skipped by `read_jsonl_tolerant`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row, default=float) + "\n")
        f.flush()


def read_jsonl_tolerant(path: str | Path) -> list[dict]:
    """Read a metrics log, dropping a partial final line left by a kill."""
    out = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def git_commit(repo: str | Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo or Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    v = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            v[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            v[p] = None
    return v


def machine() -> dict:
    """What ran it, as far as costs depend on it: the platform, the CPU's model and cores, whether it multiplies
    bfloat16 in hardware (AVX512-BF16 or AMX: several times a float32-only CPU's training rate), and the GPU."""
    return dict(_machine())


@functools.lru_cache(maxsize=1)
def _machine() -> dict:  # read once a process: every results file carries it
    import torch

    from dgpo_lib.models.precision import native_bf16
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines() if line.startswith("model name")),
                 platform.processor() or None)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu_model": model,
            "cpu_native_bf16": native_bf16("cpu"), "gpu": gpu}


def machine_share() -> float:
    """The share of the machine this process computes with: its threads (times the processes of a CPU `accelerate
    launch`, which each run as many) over the physical cores it may use, at most 1; 1 on a GPU. A stage run with
    one thread beside another stage on two cores uses half (`benchmarks/thread_layout.py` measured such a pair doing
    as much work as one two-thread process). Threads torch does not manage (faiss's OpenMP, the tokenizers') are not
    counted, so a one-thread stage that searches a lot uses a little more than its share."""
    import torch

    if torch.cuda.is_available():
        return 1.0
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)  # set by accelerate / torchrun for every process
    return round(min(1.0, torch.get_num_threads() * world / physical_cores()), 3)


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (hyperthread siblings count once: torch's default
    thread count), from /proc/cpuinfo; the usable CPUs where that says nothing."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores, cpu, phys = set(), None, "0"
    for line in _cpuinfo().splitlines():
        key, _, value = (x.strip() for x in line.partition(":"))
        if key == "processor":
            cpu = int(value)
        elif key == "physical id":
            phys = value
        elif key == "core id" and cpu in cpus:
            cores.add((phys, value))
    return len(cores) or len(cpus) or 1


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def provenance(cfg=None, **extra) -> dict:
    """The stamp every results file carries: seed, preset, config hash, versions, git commit, time."""
    d = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "git_commit": git_commit(),
         "versions": versions(), "machine": machine()}
    if cfg is not None:
        d.update(seed=cfg.seed, preset=cfg.preset, config_hash=cfg.hash())
    d.update(extra)
    return d


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def best_val_dir(out_dir: Path) -> Path:
    """Where the model with the best validation EM of an RL run is kept, beside its final model `out_dir`."""
    return Path(out_dir).with_name(Path(out_dir).name + "_best_val")

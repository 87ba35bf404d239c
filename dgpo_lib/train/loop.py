"""The one training loop every method uses: resumable checkpoints, a metrics log, a progress bar.

A checkpoint holds the trainable weights (safetensors), optimiser and scheduler states, the torch RNG state and
any stateful helper (TAID's t, DistiLLM's replay probability). Data order is a pure function of (seed, step),
so a run killed at any point and restarted from its latest checkpoint ends with the same weights and metrics
as a run that was never interrupted.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Callable

import torch

from dgpo_lib.data.loaders import shown_path
from dgpo_lib.memory import release_memory
from dgpo_lib.pauses import mark, working_s
from dgpo_lib.io_utils import (
    append_jsonl,
    atomic_write_json,
    atomic_write_jsonl,
    machine_share,
    read_jsonl_tolerant,
)

log = logging.getLogger(__name__)


def linear_warmup(optimizer, total_steps: int, warmup_ratio: float, from_zero: bool = False):
    """Linear warm-up, then constant. `from_zero` is verl's `get_constant_schedule_with_warmup` as Search-R1 and
    DGPO call it: int(ratio * steps) warm-up steps and a factor min(1, s / warm) at update s, so the first update
    runs at learning rate 0; otherwise round(ratio * steps) steps and (s + 1) / warm, the first update at 1 / warm."""
    if from_zero:
        warm = int(warmup_ratio * total_steps)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, s / max(1, warm)))
    warm = max(0, int(round(total_steps * warmup_ratio)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)


def kd_schedule(optimizer, total_steps: int, warmup_ratio: float, kind: str = "constant"):
    """`constant`: linear warm-up, then constant; `cosine`: TAID's schedule (transformers' cosine decay to 0 after
    the warm-up; TAID uses no warm-up)."""
    if kind == "constant":
        return linear_warmup(optimizer, total_steps, warmup_ratio)
    if kind == "cosine":
        from transformers import get_cosine_schedule_with_warmup
        return get_cosine_schedule_with_warmup(optimizer, int(round(total_steps * warmup_ratio)), total_steps)
    raise ValueError(f"unknown learning-rate schedule {kind!r} (constant or cosine)")


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    names = {n for n, p in module.named_parameters() if p.requires_grad}
    return {k: v.detach().contiguous().clone() for k, v in module.state_dict().items() if k in names}


class Checkpointer:
    def __init__(self, folder: Path, keep: int = 2):
        self.folder, self.keep = Path(folder), keep

    def latest(self) -> Path | None:
        done = sorted((p for p in self.folder.glob("step_*") if (p / "state.json").exists()),
                      key=lambda p: int(p.name.split("_")[1]))
        return done[-1] if done else None

    def save(self, step: int, modules: dict, optimizers: dict, schedulers: dict, helpers: dict) -> Path:
        from safetensors.torch import save_file

        out = self.folder / f"step_{step}"
        tmp = self.folder / f".step_{step}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, m in modules.items():
            save_file(trainable_state(m), str(tmp / f"{name}.safetensors"))
        torch.save({"optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                    "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
                    "torch_rng": torch.get_rng_state()}, tmp / "optim.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step,
                                                    "helpers": {k: h.state_dict() for k, h in helpers.items()}}))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)  # a directory appears complete or not at all
        for old in sorted(self.folder.glob("step_*"), key=lambda p: int(p.name.split("_")[1]))[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return out

    def load(self, path: Path, modules: dict, optimizers: dict, schedulers: dict, helpers: dict) -> int:
        from safetensors.torch import load_file

        for name, m in modules.items():
            missing = m.load_state_dict(load_file(str(path / f"{name}.safetensors")), strict=False)
            if missing.unexpected_keys:
                raise RuntimeError(f"{path}/{name}.safetensors has unexpected keys {missing.unexpected_keys[:3]}")
        blob = torch.load(path / "optim.pt", weights_only=True)  # our own file, still never a full unpickle
        for k, o in optimizers.items():
            o.load_state_dict(blob["optimizers"][k])
        for k, s in schedulers.items():
            s.load_state_dict(blob["schedulers"][k])
        torch.set_rng_state(blob["torch_rng"])
        state = json.loads((path / "state.json").read_text())
        for k, h in helpers.items():
            h.load_state_dict(state["helpers"][k])
        return int(state["step"])


def run_training(run_dir: Path, total_steps: int, step_fn: Callable[[int], dict], modules: dict,
                 optimizers: dict, schedulers: dict, helpers: dict | None = None, *, save_every: int = 10,
                 desc: str = "train", progress: bool = True, stop_after: int | None = None,
                 is_main: bool = True, barrier: Callable[[], None] = lambda: None,
                 val_fn: Callable[[int], dict] | None = None, val_every: int = 0,
                 on_best: Callable[[int, dict], None] | None = None) -> list[dict]:
    """Run `step_fn(step)` for the remaining steps; `stop_after` ends early (used to test resumption).
    Under several processes only the main one writes metrics and checkpoints; all of them load.

    With `val_fn` and `val_every`, `val_fn(step)` (greedy EM on the validation slice of training questions) runs
    before the first step and every `val_every` steps and at the end; its rows go to `val_metrics.jsonl`: the
    learning curve budgets and checkpoints are chosen on. `on_best(step, row)` is called whenever a validation
    beats every earlier one on `val_em` (strictly: the earliest of equal bests is kept), to save that model."""
    from tqdm import tqdm

    helpers = helpers or {}
    run_dir = Path(run_dir)
    share = machine_share()  # each row's time weighs this much in its stage's work time (a stage resumed with
    # other threads than its earlier processes had counts each part at its own share)
    ck = Checkpointer(run_dir / "ckpt")
    metrics_path = run_dir / "metrics.jsonl"
    start = 0
    latest = ck.latest()
    if latest is not None:
        start = ck.load(latest, modules, optimizers, schedulers, helpers)
        log.info("%s: resuming at step %d of %d from its checkpoint %s", desc, start, total_steps, shown_path(latest))
    # drop rows logged after the checkpoint we resume from (they will be recomputed identically)
    rows = [r for r in read_jsonl_tolerant(metrics_path) if r.get("step", 0) <= start]
    val_path = run_dir / "val_metrics.jsonl"
    val_rows = [r for r in read_jsonl_tolerant(val_path) if r.get("step", 0) <= start]
    if is_main:
        atomic_write_jsonl(metrics_path, rows)
        if val_fn is not None and val_every:
            atomic_write_jsonl(val_path, val_rows)
        (run_dir / "resumed.json").unlink(missing_ok=True)
        if start:  # the steps and validations done by earlier processes: the stage record adds them to its wall time
            done = [(r.get("step_s", 0.0), r.get("machine_share", 1.0)) for r in rows] + \
                   [(r.get("val_s", 0.0), r.get("machine_share", 1.0)) for r in val_rows]
            atomic_write_json(run_dir / "resumed.json", {
                "resumed_at_step": start, "earlier_loop_s": round(sum(s for s, _ in done), 1),
                "earlier_loop_work_s": round(sum(secs * part for secs, part in done), 1)})
    barrier()

    def validate(step: int) -> None:
        if val_fn is None or not val_every or any(r["step"] == step for r in val_rows):
            return
        release_memory()  # the training phase's freed memory, before the rollouts' KV caches (and back after)
        t0 = mark()
        row = {"step": step, **{k: float(v) for k, v in val_fn(step).items()}, "val_s": working_s(t0),
               "machine_share": share}
        release_memory()
        best = max((r["val_em"] for r in val_rows), default=None) if on_best is not None else None
        val_rows.append(row)
        if is_main:
            append_jsonl(val_path, row)
            if on_best is not None and (best is None or row["val_em"] > best):
                on_best(step, row)
        log.info("%s: step %d validation %s", desc, step, {k: round(v, 3) for k, v in row.items() if k != "step"})

    if start == 0:
        validate(0)
    bar = tqdm(range(start, total_steps), desc=desc, unit="step", disable=not progress, initial=start,
               total=total_steps)
    for step in bar:
        t0 = mark()
        m = step_fn(step)
        m = {"step": step + 1, **{k: float(v) for k, v in m.items()}, "step_s": working_s(t0),  # a pause is not work
             "machine_share": share}
        if is_main:
            append_jsonl(metrics_path, m)
        bar.set_postfix({k: f"{v:.3g}" for k, v in m.items() if k in ("loss", "em", "kl_teacher")})
        if val_every and ((step + 1) % val_every == 0 or step + 1 == total_steps):
            validate(step + 1)  # before the checkpoint, so a resumed run never repeats a validation
        if (step + 1) % save_every == 0 or step + 1 == total_steps:
            if is_main:
                ck.save(step + 1, modules, optimizers, schedulers, helpers)
            barrier()
        if stop_after is not None and step + 1 >= stop_after:
            break
    return read_jsonl_tolerant(metrics_path)

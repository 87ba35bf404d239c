"""A stage's life in its folder: it says when it runs, writes `done.json` last (provenance, wall time, peak memory),
and is reused from then on; its resumable checkpoints go once it is done."""
from __future__ import annotations

import contextlib
import json
import logging
import resource
import shutil
import time
from pathlib import Path

from dgpo_lib.data import loaders as D
from dgpo_lib.io_utils import atomic_write_json, machine_share, provenance
from dgpo_lib.pauses import paused_s
from dgpo_lib.pipeline.keys import stage_key

log = logging.getLogger("dgpo_lib.pipeline")


class StageRecords:
    """Done-records of one config's stages, under `folder_of(name)`."""

    def __init__(self, cfg, folder_of, run_dir: Path):
        self.cfg, self.folder_of, self.run_dir = cfg, folder_of, run_dir
        self._said_done: set = set()

    def is_done(self, name: str) -> bool:
        done = (self.folder_of(name) / "done.json").exists()
        if done and name not in self._said_done:  # say once which finished stages a run reuses
            self._said_done.add(name)
            log.info("%s: finished earlier, reusing %s", name, D.shown_path(self.folder_of(name)))
        return done

    @contextlib.contextmanager
    def running(self, name: str):
        """`with records.running(name) as info:` runs stage `name`; what the body puts in `info` joins its
        done.json. An exception leaves no record, so the stage runs (or resumes) again next time."""
        log.info("%s: running, in %s", name, D.shown_path(self.folder_of(name)))
        started, info, paused_before = time.time(), {}, paused_s()
        yield info
        paused = round(paused_s() - paused_before)  # kill -TSTP ... -CONT while it ran (dgpo_lib/pauses.py)
        self.mark_done(name, started, **({"paused_s": paused} if paused else {}), **info)

    def mark_done(self, name: str, started: float, **info) -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB -> GiB, process peak so far
        folder = self.folder_of(name)
        # a stage resumed from a checkpoint: the training steps and validations that earlier processes did
        resumed = [json.loads(p.read_text()) for p in folder.rglob("resumed.json")]
        earlier = sum(r["earlier_loop_s"] for r in resumed)
        outside = info.pop("earlier_work_outside_loop_s", 0.0)  # e.g. a resumed layer choice's earlier rounds
        if earlier or outside:
            info = {"earlier_processes_s": round(earlier, 1), "earlier_processes_work_s": round(
                sum(r.get("earlier_loop_work_s", r["earlier_loop_s"]) for r in resumed) + outside, 1), **info}
        atomic_write_json(folder / "done.json",
                          provenance(self.cfg, stage=name, stage_key=stage_key(self.cfg, name),
                                     wall_s=round(time.time() - started, 1), peak_rss_gib=round(peak, 2),
                                     machine_share=machine_share(), **info))
        atomic_write_json(self.run_dir / "config.json", self.cfg.to_record())
        log.info("%s: done in %.1f min", name, (time.time() - started) / 60)
        self._said_done.add(name)  # later calls reuse it without saying so again
        # a finished stage never resumes: its resumable checkpoints (12 B per parameter, two kept) go, its models stay
        for ckpt in sorted(folder.rglob("ckpt")):
            shutil.rmtree(ckpt, ignore_errors=True)

    def info(self, name: str) -> dict:
        """Stage `name`'s done.json ({} when it has not finished)."""
        p = self.folder_of(name) / "done.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def all(self, names) -> dict[str, dict]:
        """Every finished stage's done.json, by stage name."""
        return {n: r for n in sorted(names) if (r := self.info(n))}


def work_s(record: dict) -> float:
    """A stage record's work time: the machine time it took, as if it had had the machine alone. Its wall time less
    a recorded pause (SIGSTOP while something else had the cores), times the share of the machine its process used
    (`machine_share`; records written before it was recorded count the whole machine), plus the work of earlier
    processes when it resumed from a checkpoint (each of their steps weighted by its own share). A recorded pause
    is taken off at the last process's share, even if an earlier process (with another share) was the one paused."""
    own = (record.get("wall_s", 0.0) - record.get("paused_s", 0)) * record.get("machine_share", 1.0)
    return own + record.get("earlier_processes_work_s", record.get("earlier_processes_s", 0.0))

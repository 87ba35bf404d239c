"""`Run`: one config's reproduction. It knows where each stage's folder is and whether it has finished, runs a stage
(`run.stage(name)`, or `run.kd("taid")`, `run.rl("dgpo")`, `run.evaluate("dgpo")`) only when it has not finished,
and gives the paths and loaded models of finished stages (`model_path`, `load`), which never train. The data,
retriever and environments the stages share are `run.resources` (pipeline/resources.py)."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from dgpo_lib.config import Config
from dgpo_lib.data import loaders as D
from dgpo_lib.models.loading import (
    count_parameters_of,
    fix_pad_token,
    load_model,
    load_role,
    load_tokenizer,
    resolve_model_path,
    student_layer_choice,
)
from dgpo_lib.models.precision import set_compute_dtype
from dgpo_lib.pipeline import keys, stages
from dgpo_lib.pipeline.records import StageRecords
from dgpo_lib.pipeline.resources import Resources

log = logging.getLogger("dgpo_lib.pipeline")


class StageNotDone(FileNotFoundError):
    """A finished stage's output was asked for before the stage ran."""


@dataclass
class Run:
    cfg: Config
    progress: bool = True

    def __post_init__(self):
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        set_compute_dtype(self.cfg.models.compute_dtype)
        self.device = "cuda" if torch.cuda.is_available() else None
        self.resources = Resources(self.cfg, self.root, self.progress)
        self._models: dict = {}
        self._student_layer_choice = None
        self.records = StageRecords(self.cfg, self.stage_dir, self.dir)

    # ---------------------------------------------------------------- folders and stage bookkeeping
    @property
    def root(self) -> Path:
        return D.repo_path(self.cfg.run_root)

    @property
    def dir(self) -> Path:
        """The whole config's folder: results.json and config.json."""
        return self.root / f"{self.cfg.preset}-{self.cfg.hash()}"

    def stage_key(self, name: str) -> str:
        return keys.stage_key(self.cfg, name)

    def stage_dir(self, name: str) -> Path:
        """`<run_root>/<preset>-<stage key>/<stage>/`: stages that read the same config share nothing else."""
        return self.root / f"{self.cfg.preset}-{self.stage_key(name)}" / name

    def stage_names(self) -> list[str]:
        return keys.stage_names(self.cfg)

    def upstream(self, name: str) -> list[str]:
        return keys.upstream(self.cfg, name)

    def rl_checkpoint(self, row: str) -> str:
        return keys.rl_checkpoint(self.cfg, row)

    def is_done(self, name: str) -> bool:
        return self.records.is_done(name)

    def stage_info(self, name: str) -> dict:
        return self.records.info(name)

    def stage_records(self) -> dict[str, dict]:
        """Every finished stage's done.json (provenance, wall time, peak memory), by stage name."""
        return self.records.all(self.stage_names())

    # ---------------------------------------------------------------- running stages
    def stage(self, name: str):
        """Stage `name`'s output (a model folder, the TGO dataset, an evaluation summary), running it and the
        stages it reads first if they have not finished."""
        kind, _, what = name.partition("_")
        base = self._untrained_model(name)
        if base is not None:
            return base
        if self.is_done(name):
            return self._output(name)
        if name in ("student", "teacher", "tgo"):
            return stages.STAGES[name](self)
        if kind in ("kd", "rl", "eval") and what:
            return stages.STAGES[kind](self, what)
        raise ValueError(f"unknown stage {name!r} (stages: {', '.join(self.stage_names())})")

    def output(self, name: str) -> str | Path:
        """`stage(name)` for a stage whose output another stage reads: its model or dataset must be on disk. A
        stage restored from committed results (`scripts/restore_results.py`) is finished without its weights."""
        out = self.stage(name)
        if self._untrained_model(name) is None and not Path(out).exists():  # (a hub id is not a folder)
            raise self._no_weights(name)
        return out

    def _no_weights(self, name: str) -> StageNotDone:
        done = D.shown_path(self.stage_dir(name) / "done.json")
        return StageNotDone(f"{name}: finished, but its output is not on this machine (its record was restored from "
                            f"committed results, which hold no weights); delete {done} to train it again, or run "
                            f"in an empty run_root=")

    def _untrained_model(self, name: str) -> str | None:
        """The model folder of a stage that trains nothing under this config (no healing: the pruned base is the
        student; a pretrained teacher), else None."""
        if name == "student" and not self.cfg.models.heal_steps:
            return self.pruned_student_path()
        if name == "teacher" and self.cfg.teacher.source == "pretrained":
            return self.base_path("teacher")
        return None

    def _output(self, name: str):
        folder = self.stage_dir(name)
        if name == "tgo":
            return folder / "dataset"
        if name.startswith("eval_"):
            return json.loads((folder / "summary.json").read_text())
        return str(folder / "model")

    def student(self) -> str:
        """Stage `student`: the model every student method starts from."""
        return self.stage("student")

    def teacher(self) -> str:
        """Stage `teacher`: the search-agent teacher."""
        return self.stage("teacher")

    def tgo(self) -> Path:
        return self.stage("tgo")

    def kd(self, method: str) -> str:
        return self.stage(f"kd_{method}")

    def rl(self, variant: str) -> str:
        return self.stage(f"rl_{variant}")

    def evaluate(self, row: str) -> dict:
        return self.stage(f"eval_{row}")

    def results(self, rows: list[str] | None = None, file: str = "results.json") -> dict:
        """Evaluate every row (cached) and write `file` (the main table: results.json)."""
        from dgpo_lib.pipeline.results import results
        return results(self, rows or list(self.cfg.eval.methods), file)

    # ---------------------------------------------------------------- models of finished stages
    def pruned_student_path(self, pruned: bool = True) -> str:
        """The student base with `models.student_layers` kept, chosen by `models.student_layer_choice` (or,
        pruned=False, all of them: healing's teacher)."""
        m = self.cfg.models
        if not pruned:
            return resolve_model_path(m.student, "student", None, m.tiny_hidden, m.tiny_layers, self.cfg.seed)
        return resolve_model_path(m.student, "student", m.student_layers, m.tiny_hidden, m.tiny_layers,
                                  self.cfg.seed, self._layer_choice(), self.progress)

    def _layer_choice(self):
        """The student's layer choice, its calibration passages read once per Run (the whole corpus is read)."""
        if self._student_layer_choice is None:
            self._student_layer_choice = student_layer_choice(self.cfg)
        return self._student_layer_choice

    def model_path(self, row: str) -> str:
        """Checkpoint folder of a results-table row whose stage has finished (`ppo@best_val`: the RL run's
        checkpoint selected on validation)."""
        stage = keys.row_stage(row)
        base = self._untrained_model(stage)
        if base is not None:
            return base
        if not self.is_done(stage):
            raise StageNotDone(f"row {row!r}: stage {stage} has not finished "
                               f"(run it: python -m dgpo_lib.pipeline.run_stage {stage} --preset {self.cfg.preset})")
        final = self._output(stage)
        if not Path(final).exists():
            raise self._no_weights(stage)
        if not stage.startswith("rl_") or self.rl_checkpoint(row) == "final":
            return final
        from dgpo_lib.io_utils import best_val_dir
        best = best_val_dir(Path(final))
        if not (best / "selected.json").exists():
            raise FileNotFoundError(f"{best}: no checkpoint selected on validation (set eval.val_points or "
                                    f"eval.val_every > 0 and data.n_val > 0 before training {stage})")
        return str(best)

    def load(self, row: str):
        """(model, tokenizer) of a finished row, loaded once."""
        if row not in self._models:
            if row == "teacher" and self.cfg.teacher.source == "pretrained":
                self._models[row] = load_role(self.cfg, "teacher")
            else:
                self._models[row] = load_model(self.model_path(row), self.cfg.models.dtype, self.device)
        return self._models[row]

    def base_path(self, role: str) -> str:
        """The model a role starts from (the teacher's base; the pruned student): what training keeps of it are
        its tokenizer and its architecture, so neither needs the trained weights."""
        if role == "student":
            return self.pruned_student_path()
        m = self.cfg.models
        return resolve_model_path(m.teacher, "teacher", None, m.tiny_hidden, m.tiny_layers, self.cfg.seed)

    def tokenizer(self, role: str):
        """The tokenizer of a role's models, with the pad token `load_model` gives them."""
        tok = load_tokenizer(self.base_path(role))
        fix_pad_token(tok)
        return tok

    def parameter_counts(self) -> dict:
        return {r: count_parameters_of(self.base_path(r)) for r in ("teacher", "student")}

    def metrics(self, stage: str, file: str = "metrics.jsonl") -> list[dict]:
        """A stage's training log (`stage` may name a part of it, e.g. `teacher/sft`); `val_metrics.jsonl` holds
        its validation curve."""
        from dgpo_lib.io_utils import read_jsonl_tolerant
        name, _, part = stage.partition("/")
        return read_jsonl_tolerant(self.stage_dir(name) / part / file)

"""The reproduction as cached stages. Notebooks call these; each stage writes its outputs under
`<run_root>/<preset>-<stage key>/<stage>/` and a `done.json` last, so a finished stage is reused, a half-finished
one is redone (training stages resume from their checkpoints), and the book can be rebuilt without retraining.
A stage's key hashes the config entries it reads (`STAGE_READS`) and its upstream stages' keys: changing
`rl.beta` reruns the RL stages and their evaluations, never healing, the teacher or KD. The run's own folder
`<run_root>/<preset>-<config hash>/` holds the files of the whole config (results.json, config.json).

Stages: index -> student (healing a pruned student) -> teacher -> tgo -> kd_<method> -> rl_<variant> -> eval_<row> -> results.
"""
from __future__ import annotations

import copy
import json
import logging
import shutil
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import data as D
from .config import Config
from .io_utils import atomic_write_json, provenance, seed_everything
from .precision import set_compute_dtype
from .models import count_parameters, load_model, load_role, resolve_model_path
from .kd import KD_METHODS
from .rl import RL_VARIANTS, rl_variant  # noqa: F401  (RL_VARIANTS: the RL rows, listed by stage.py)

log = logging.getLogger(__name__)

KD_ROWS = tuple(KD_METHODS)  # the KD baselines' rows, in the paper's order
# The paper's two distillation-only ablations (its Figure 5): on-policy GKD (every batch the student's own
# generations, scored by the teacher) from the untrained student ("GKD, teacher guidance only") and from the KD
# cold start ("KD -> GKD"); row -> the row whose model it starts from. Same step budget as the KD methods.
GKD_ABLATIONS = {"gkd_onpolicy": "student", "kd_then_gkd": "kd"}


def kd_stage(row: str) -> bool:
    """Rows trained by a KD stage (`kd_<row>`): the KD baselines and the GKD ablations."""
    return row in KD_ROWS or row in GKD_ABLATIONS

# What each kind of stage reads of the config (sections or dotted keys): with the keys of its upstream stages, its
# cache key. Rollouts read the data, the retriever, the rollout settings and how models are run.
ROLLOUT_READS = ("data", "retrieval", "rollout", "models.dtype", "models.compute_dtype", "models.chat_template",
                 "models.few_shot")
STAGE_READS = {
    "student": ("seed", "data", "train", "models.student", "models.student_layers", "models.heal_steps",
                "models.heal_lr", "models.heal_batch", "models.heal_seq_len", "models.heal_held_out",
                "models.tiny_hidden", "models.tiny_layers", "models.dtype", "models.compute_dtype"),
    "teacher": ("seed", "train", "teacher", "models.teacher", "models.tiny_hidden", "models.tiny_layers",
                *ROLLOUT_READS),
    "tgo": ("seed", "kd.tgo_questions", "kd.tgo_temperature", *ROLLOUT_READS),
    "kd": ("seed", "train", "kd", *ROLLOUT_READS),
    "rl": ("seed", "train", "rl", *ROLLOUT_READS),
    "eval": ("seed", "eval.batch_size", *ROLLOUT_READS),
}
# Knobs that only split a batch into smaller forward passes change memory, not results: they stay out of the keys,
# so lowering one to fit a machine reuses what was trained with the larger value.
NOT_IN_KEYS = ("teacher.sft_micro_batch",)


def _pick(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d[part]
    return d


@dataclass
class Run:
    cfg: Config
    progress: bool = True

    def __post_init__(self):
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        set_compute_dtype(self.cfg.models.compute_dtype)
        self.device = "cuda" if torch.cuda.is_available() else None
        self._retriever = None
        self._models: dict = {}
        self._said_done: set = set()

    # ---------------------------------------------------------------- folders and stage bookkeeping
    @property
    def root(self) -> Path:
        return D.repo_path(self.cfg.run_root)

    @property
    def dir(self) -> Path:
        """The whole config's folder: results.json and config.json."""
        return self.root / f"{self.cfg.preset}-{self.cfg.hash()}"

    def upstream(self, name: str) -> list[str]:
        """The stages whose outputs stage `name` reads."""
        kind, _, what = name.partition("_")
        if kind in ("student", "teacher"):
            return []
        if kind == "tgo":
            return ["teacher"]
        if kind == "kd":
            return ["tgo", "kd_kd" if GKD_ABLATIONS.get(what) == "kd" else "student"]
        if kind == "rl":
            from_kd = rl_variant(what).start == "kd" and not self.cfg.rl.cold_start
            return ["kd_kd" if from_kd else "student", "teacher"]
        if kind == "eval":
            what = what.partition("@")[0]
            return [what if what in ("student", "teacher") else f"kd_{what}" if kd_stage(what) else f"rl_{what}"]
        raise ValueError(f"unknown stage {name!r}")

    def stage_key(self, name: str) -> str:
        """Hash of what stage `name` reads of the config and of its upstream stages' keys."""
        import hashlib

        kind = name.partition("_")[0]
        reads = STAGE_READS[kind] + (("rl",) if kind == "teacher" and self.cfg.teacher.ppo_steps else ())
        d = self.cfg.to_dict()
        for dotted in NOT_IN_KEYS:
            section, _, key = dotted.partition(".")
            d[section].pop(key)
        extra = {}
        if kind == "eval" and self.upstream(name)[0].startswith("rl_"):
            extra["checkpoint"] = self.rl_checkpoint(name.partition("_")[2])
        blob = {"stage": name, "reads": {k: _pick(d, k) for k in reads}, **extra,
                "upstream": {u: self.stage_key(u) for u in self.upstream(name)}}
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def stage_dir(self, name: str) -> Path:
        return self.root / f"{self.cfg.preset}-{self.stage_key(name)}" / name

    def stage_names(self) -> list[str]:
        """Every stage this config's results table and ablations need, upstream first."""
        rows = list(dict.fromkeys([*self.cfg.eval.methods, *self.cfg.eval.ablations]))
        trained = [f"kd_{m}" for m in KD_ROWS] + [f"kd_{r}" for r in rows if r in GKD_ABLATIONS] + \
            [f"rl_{r}" for r in rows if not kd_stage(r) and r not in ("student", "teacher")]
        return ["student", "teacher", "tgo", *trained, *(f"eval_{r}" for r in rows)]

    def is_done(self, name: str) -> bool:
        done = (self.stage_dir(name) / "done.json").exists()
        if done and name not in self._said_done:  # say once which finished stages a run reuses
            self._said_done.add(name)
            log.info("%s: finished earlier, reusing %s", name, D.shown_path(self.stage_dir(name)))
        return done

    def begin(self, name: str) -> float:
        """Say that stage `name` runs now (a resumed one says so again when it finds its checkpoint)."""
        log.info("%s: running, in %s", name, D.shown_path(self.stage_dir(name)))
        return time.time()

    def mark_done(self, name: str, started: float, **info) -> None:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB -> GiB, process peak so far
        atomic_write_json(self.stage_dir(name) / "done.json",
                          provenance(self.cfg, stage=name, stage_key=self.stage_key(name),
                                     wall_s=round(time.time() - started, 1), peak_rss_gib=round(peak, 2), **info))
        atomic_write_json(self.dir / "config.json", self.cfg.to_dict())
        log.info("%s: done in %.1f min", name, (time.time() - started) / 60)
        self._said_done.add(name)  # later calls reuse it without saying so again
        # a finished stage never resumes: its resumable checkpoints (12 B per parameter, two kept) go, its models stay
        for ckpt in sorted(self.stage_dir(name).rglob("ckpt")):
            shutil.rmtree(ckpt, ignore_errors=True)

    @staticmethod
    def work_s(record: dict) -> float:
        """A stage record's work time: wall time less a recorded pause (SIGSTOP while something else had the
        cores)."""
        return record.get("wall_s", 0.0) - record.get("paused_s", 0)

    def stage_records(self) -> dict[str, dict]:
        """Every finished stage's done.json (provenance, wall time, peak memory, pauses), by stage name."""
        paths = {n: self.stage_dir(n) / "done.json" for n in self.stage_names()}
        return {n: json.loads(p.read_text()) for n, p in sorted(paths.items()) if p.exists()}

    def stage_info(self, name: str) -> dict:
        p = self.stage_dir(name) / "done.json"
        return json.loads(p.read_text()) if p.exists() else {}

    # ---------------------------------------------------------------- data and retrieval
    def eval_sets(self):
        return D.load_eval_sets(self.cfg)

    def train_questions(self):
        return D.load_train_questions(self.cfg)

    def val_questions(self):
        return D.load_val_questions(self.cfg)

    def val_fn(self, tok):
        """`val_fn(model, step)`: greedy EM on the validation slice, the learning curves' y axis (None when
        `eval.val_every` and `eval.val_points` are 0 or there is no validation slice)."""
        qs = self.val_questions()[: self.cfg.eval.val_questions]
        if not qs or not (self.cfg.eval.val_every or self.cfg.eval.val_points):
            return None
        from .evaluate import summarize_set
        from .rollout import run_batched

        def fn(model, step: int) -> dict:
            was_training = model.training
            model.eval()
            trajs = run_batched(self.env(model, tok, greedy=True), qs, self.cfg.eval.batch_size, progress=False)
            model.train(was_training)
            s = summarize_set(trajs)
            # hit ratio beside EM: a retrieved block held an answer (search worked) vs the answer was right (read)
            row = {f"val_{k}": s[k] for k in ("em", "searches", "answered", "hit_ratio")}
            for ds in sorted({t.question.dataset for t in trajs}):  # NQ and HotpotQA learn at different rates
                row[f"val_em_{ds}"] = summarize_set([t for t in trajs if t.question.dataset == ds])["em"]
            return row
        return fn

    def retriever(self):
        """The index is shared by every run over the same passages with the same retrieval settings."""
        if self._retriever is None:
            from .retrieval import build_retriever, corpus_fingerprint
            passages = D.load_cfg_corpus(self.cfg)
            # keyed by what the index depends on: the passages themselves and the retrieval settings
            key = f"{corpus_fingerprint(passages)[:12]}-{self.cfg.hash('retrieval')}"
            t0 = time.time()
            self._retriever = build_retriever(self.cfg, passages, self.root / f"index-{key}", progress=self.progress)
            log.info("retriever ready in %.1fs", time.time() - t0)
        return self._retriever

    def env(self, model, tok, greedy: bool, model_path: str | None = None):
        """A Search-R1 environment; `model_path` marks a frozen model (vLLM may serve it)."""
        from .generators import make_generator
        from .rollout import RolloutSettings, SearchEnv
        return SearchEnv(make_generator(model, tok, self.cfg, model_path), self.retriever(), tok,
                         RolloutSettings.from_config(self.cfg, greedy))

    # ---------------------------------------------------------------- models
    def pruned_student_path(self, pruned: bool = True) -> str:
        """The student base with `models.student_layers` kept (or, pruned=False, all of them: healing's teacher)."""
        m = self.cfg.models
        return resolve_model_path(m.student, "student", m.student_layers if pruned else None, m.tiny_hidden,
                                  m.tiny_layers, self.cfg.seed)

    def student_base_path(self) -> str:
        """The student every method starts from: the pruned base, healed on corpus text when heal_steps > 0."""
        if not self.cfg.models.heal_steps:
            return self.pruned_student_path()
        return self.healed_student()

    # ---------------------------------------------------------------- stage: the student base
    def healing_texts(self) -> tuple[list[str], list[str], set[str]]:
        """(training passages, held-out passages, excluded ids): the corpus minus the gold passages of every
        evaluation question (healing must not read the test answers), shuffled with the seed."""
        import random

        gold = {i for rows in self.eval_sets().values() for q in rows for i in q.metadata.get("supporting_ids") or []}
        texts = [p.contents for p in D.load_cfg_corpus(self.cfg) if p.id not in gold]
        random.Random(f"{self.cfg.seed}:heal-split").shuffle(texts)
        n = self.cfg.models.heal_held_out
        return texts[n:], texts[:n], gold

    def healed_student(self) -> str:
        """Stage `student`: the pruned student after healing (dgpo_lib/heal.py), trained once per config."""
        name = "student"
        out = self.stage_dir(name) / "model"
        if self.is_done(name):
            return str(out)
        from .heal import heal_student

        c, m = self.cfg, self.cfg.models
        t0 = self.begin(name)
        seed_everything(c.seed)
        student, tok = load_model(self.pruned_student_path(), m.dtype, self.device)
        base, _ = load_model(self.pruned_student_path(pruned=False), m.dtype, self.device)
        texts, held_out, gold = self.healing_texts()
        info = heal_student(student, base, tok, texts, held_out, c, self.stage_dir(name), out, self.progress)
        self.mark_done(name, t0, **info, n_gold_excluded=len(gold),
                       parameters={"student": count_parameters(student), "base": count_parameters(base)})
        del base
        return str(out)

    def rl_checkpoint(self, row: str) -> str:
        """final or best_val: the `@` suffix of an RL row, else `eval.rl_checkpoint`."""
        pinned = row.partition("@")[2]
        if pinned and pinned not in ("final", "best_val"):
            raise ValueError(f"row {row!r}: the suffix after @ must be final or best_val")
        return pinned or self.cfg.eval.rl_checkpoint

    def model_path(self, row: str) -> str:
        """Checkpoint folder of a results-table row (training it if needed)."""
        if row == "student":
            return self.student_base_path()
        if row == "teacher":
            return self.teacher_path()
        if kd_stage(row):
            return self.kd(row)
        final = self.rl(row.partition("@")[0])
        if self.rl_checkpoint(row) == "final":
            return final
        from .rl import best_val_dir
        best = best_val_dir(Path(final))
        if not (best / "selected.json").exists():
            raise FileNotFoundError(f"{best}: no checkpoint selected on validation (set eval.val_points or eval.val_every > 0 and "
                                    f"data.n_val > 0 before training {row.partition('@')[0]})")
        return str(best)

    def load(self, row: str):
        if row not in self._models:
            if row == "teacher" and self.cfg.teacher.source == "pretrained":
                self._models[row] = load_role(self.cfg, "teacher")
            else:
                self._models[row] = load_model(self.model_path(row), self.cfg.models.dtype, self.device)
        return self._models[row]

    def parameter_counts(self) -> dict:
        return {r: count_parameters(self.load(r)[0]) for r in ("teacher", "student")}

    # ---------------------------------------------------------------- stage: the teacher
    def teacher_path(self) -> str:
        c = self.cfg
        if c.teacher.source == "pretrained":
            m = c.models
            return resolve_model_path(m.teacher, "teacher", None, m.tiny_hidden, m.tiny_layers, c.seed)
        name = "teacher"
        out = self.stage_dir(name) / "model"
        if self.is_done(name):
            return str(out)
        from .kd import train_kd
        from .rl import RLVariant, train_rl
        from .trajectories import oracle_trajectories, save_dataset, seqs_of, summarize, trajectories_to_dataset

        t0 = self.begin(name)
        seed_everything(c.seed)
        base, tok = load_role(c, "teacher")
        qs = self.train_questions()[: c.teacher.sft_questions]
        oracle = oracle_trajectories(self.env(base, tok, True), qs, c.rollout.batch_size)
        save_dataset(trajectories_to_dataset(oracle), self.stage_dir(name) / "oracle", c)
        sft = copy.deepcopy(c)
        sft.kd.steps = max(1, math.ceil(c.teacher.sft_epochs * len(oracle) / c.teacher.sft_batch))
        sft.kd.lr, sft.kd.batch_size, sft.kd.warmup_ratio = c.teacher.sft_lr, c.teacher.sft_batch, 0.05
        sft.kd.lr_schedule = "constant"
        sft.train.micro_batch = c.teacher.sft_micro_batch or c.train.micro_batch  # the teacher's activations peak here
        sft_dir = self.stage_dir(name) / ("sft_model" if c.teacher.ppo_steps else "model")
        vf = self.val_fn(tok)
        train_kd("seqkd", base, tok, None, seqs_of(oracle), sft, self.stage_dir(name) / "sft", progress=self.progress,
                 out_dir=sft_dir, val_fn=(lambda step: vf(base, step)) if vf else None)
        if c.teacher.ppo_steps:
            rlc = copy.deepcopy(c)
            rlc.rl.steps = c.teacher.ppo_steps
            actor, _ = load_model(str(sft_dir), c.models.dtype, self.device)
            train_rl(RLVariant("ppo", "student", "initial", "always"), actor, tok, str(sft_dir), None, qs,
                     lambda a, q: self.env(a, tok, False).run(q), rlc, self.stage_dir(name) / "ppo",
                     progress=self.progress, out_dir=out)
        self.mark_done(name, t0, oracle=summarize(oracle))
        return str(out)

    # ---------------------------------------------------------------- stage: teacher-generated outputs
    def tgo(self) -> Path:
        name = "tgo"
        out = self.stage_dir(name) / "dataset"
        if self.is_done(name):
            return out
        from .rollout import run_batched
        from .trajectories import save_dataset, summarize, trajectories_to_dataset, write_records

        t0 = self.begin(name)
        seed_everything(self.cfg.seed)
        teacher, tok = self.load("teacher")
        qs = self.train_questions()[: self.cfg.kd.tgo_questions]
        env = self.env(teacher, tok, greedy=self.cfg.kd.tgo_temperature == 0, model_path=self.model_path("teacher"))
        if self.cfg.kd.tgo_temperature > 0:
            env.s.temperature = self.cfg.kd.tgo_temperature
        trajs = run_batched(env, qs, self.cfg.rollout.batch_size, desc="teacher rollouts", progress=self.progress)
        write_records(self.stage_dir(name) / "all_records.jsonl", trajs)
        correct = [t for t in trajs if t.em == 1.0]
        save_dataset(trajectories_to_dataset(correct), out, self.cfg, n_questions=len(qs))
        # the same on the validation questions: held-out teacher text (DistiLLM's validation loss), never trained on
        val = [t for t in run_batched(env, self.val_questions(), self.cfg.rollout.batch_size,
                                      desc="teacher rollouts (validation)", progress=self.progress) if t.em == 1.0]
        if val:
            save_dataset(trajectories_to_dataset(val), self.stage_dir(name) / "val_dataset", self.cfg,
                         n_questions=len(self.val_questions()))
        self.mark_done(name, t0, all=summarize(trajs), kept=summarize(correct), val_kept=len(val))
        return out

    # ---------------------------------------------------------------- stage: KD methods
    def kd(self, method: str) -> str:
        """Stage `kd_<method>`: a KD baseline, or one of the GKD ablations (on-policy GKD from GKD_ABLATIONS' start)."""
        name = f"kd_{method}"
        out = self.stage_dir(name) / "model"
        if self.is_done(name):
            return str(out)
        from .kd import train_kd
        from .trajectories import load_seqs, seqs_of

        cfg, loss = self.cfg, method
        start_path = None
        if method in GKD_ABLATIONS:
            cfg, loss = copy.deepcopy(self.cfg), "gkd"
            cfg.kd.gkd_lambda = 1.0  # every batch on-policy: the student's generations, scored by the teacher
            start_path = self.kd("kd") if GKD_ABLATIONS[method] == "kd" else None
        elif method not in KD_ROWS:
            raise ValueError(f"unknown KD stage {method!r} (known: {', '.join(KD_ROWS + tuple(GKD_ABLATIONS))})")
        t0 = self.begin(name)
        seqs = load_seqs(self.tgo())
        teacher, tok = self.load("teacher")
        seed_everything(cfg.seed)
        student, _ = load_model(start_path or self.student_base_path(), cfg.models.dtype, self.device)
        qs = self.train_questions()

        def student_rollout(step: int, n: int):  # greedy, as TAID's sampler generates
            import random
            pick = random.Random(f"{cfg.seed}:{method}:sgo:{step}").sample(range(len(qs)), min(n, len(qs)))
            return seqs_of(self.env(student, tok, greedy=True).run([qs[i] for i in pick]))

        held_out = []
        if loss == "distillm":
            held_out_dir = self.tgo().parent / "val_dataset"
            held_out = load_seqs(held_out_dir) if held_out_dir.exists() else []
            if not held_out:  # the teacher solved no validation question: hold out some of its training text
                n = min(cfg.kd.distillm_val_seqs, len(seqs) // 4)
                seqs, held_out = (seqs[:-n], seqs[-n:]) if n else (seqs, seqs[:1])
                log.warning("kd_distillm: no teacher text on validation questions; %s", f"{n} TGO sequences held out"
                            if n else "too few TGO sequences to hold any out: the first one is also trained on")
        vf = self.val_fn(tok)
        train_kd(loss, student, tok, teacher, seqs, cfg, self.stage_dir(name), student_rollout,
                 progress=self.progress, out_dir=out, val_fn=(lambda step: vf(student, step)) if vf else None,
                 held_out=held_out)
        self.mark_done(name, t0, n_sequences=len(seqs), **({"start": GKD_ABLATIONS[method]}
                                                           if method in GKD_ABLATIONS else {}))
        return str(out)

    # ---------------------------------------------------------------- stage: RL variants
    def rl(self, variant: str) -> str:
        v = rl_variant(variant).with_beta(self.cfg.rl.beta)
        name = f"rl_{variant}"
        out = self.stage_dir(name) / "model"
        if self.is_done(name):
            return str(out)
        from .rl import train_rl

        t0 = self.begin(name)
        if v.start == "kd" and self.cfg.rl.cold_start:  # a released cold-start checkpoint (rl.cold_start)
            start_path = resolve_model_path(self.cfg.rl.cold_start, "student")
        else:
            start_path = self.kd("kd") if v.start == "kd" else self.student_base_path()
        teacher, tok = self.load("teacher")
        seed_everything(self.cfg.seed)
        actor, _ = load_model(start_path, self.cfg.models.dtype, self.device)
        train_rl(v, actor, tok, start_path, teacher, self.train_questions(),
                 lambda a, q: self.env(a, tok, greedy=False).run(q), self.cfg, self.stage_dir(name),
                 progress=self.progress, out_dir=out, val_fn=self.val_fn(tok))
        self.mark_done(name, t0, variant=v.__dict__)
        return str(out)

    # ---------------------------------------------------------------- stage: evaluation and the table
    def evaluate(self, row: str) -> dict:
        name = f"eval_{row}"
        if self.is_done(name):
            return json.loads((self.stage_dir(name) / "summary.json").read_text())
        from .evaluate import evaluate

        t0 = self.begin(name)
        model, tok = self.load(row)
        seed_everything(self.cfg.seed)
        summary = evaluate(model, tok, self.retriever(), self.eval_sets(), self.cfg, self.stage_dir(name), row,
                           progress=self.progress, model_path=self.model_path(row))
        self.mark_done(name, t0)
        return summary

    def metrics(self, stage: str, file: str = "metrics.jsonl") -> list[dict]:
        """A stage's training log (`stage` may name a part of it, e.g. `teacher/sft`); `val_metrics.jsonl` holds
        its validation curve."""
        from .io_utils import read_jsonl_tolerant
        name, _, part = stage.partition("/")
        return read_jsonl_tolerant(self.stage_dir(name) / part / file)

    def _per_question(self, rows: list[str]) -> dict:
        """Question ids per benchmark and every row's EM on each, in that order: what the paired bootstrap of the
        claims table resamples (dgpo_lib/stats.py)."""
        from .trajectories import read_records

        ids: dict[str, list[str]] = {}
        em: dict[str, dict[str, list[float]]] = {}
        for r in rows:
            em[r] = {}
            for ds in self.cfg.data.eval_sets:
                path = self.stage_dir(f"eval_{r}") / f"records_{ds}.jsonl"
                by_id = {x["id"]: float(x["em"]) for x in read_records(path)}
                ids.setdefault(ds, list(by_id))
                if set(by_id) != set(ids[ds]):
                    raise ValueError(f"{path}: its questions differ from those of eval_{rows[0]}")
                em[r][ds] = [by_id[i] for i in ids[ds]]
        return {"question_ids": ids, "em_per_question": em}

    def results(self, rows: list[str] | None = None, file: str = "results.json") -> dict:
        """Evaluate every row (cached) and write `file` (the main table: results.json) with provenance and
        stage timings."""
        rows = rows or list(self.cfg.eval.methods)
        table = {r: self.evaluate(r) for r in rows}
        done = self.stage_records()
        timings = {k: d.get("wall_s") for k, d in done.items()}
        # a stage paused by hand while something else had the cores records the pause (SIGSTOP, see the book)
        pauses = {k: d["paused_s"] for k, d in done.items() if d.get("paused_s")}
        res = {"preset": self.cfg.preset, "eval_sets": list(self.cfg.data.eval_sets),
               "em": {r: {ds: v["em"] for ds, v in s["per_set"].items()} for r, s in table.items()},
               "avg_em": {r: s["avg_em"] for r, s in table.items()},
               "searches": {r: {ds: v["searches"] for ds, v in s["per_set"].items()} for r, s in table.items()},
               **self._per_question(rows),
               "stage_wall_s": timings, "stage_paused_s": pauses, "provenance": provenance(self.cfg)}
        atomic_write_json(self.dir / file, res)
        return res

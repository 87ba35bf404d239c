"""The training and evaluation stages, one function each: `run_<stage>(run, ...)` trains (or evaluates) and
returns the stage's output. `Run.stage` calls them only for a stage that has not finished; each asks `run` for its
upstream stages' outputs, which runs those first when needed.

student (healing a pruned student) -> teacher -> tgo -> kd_<method> -> rl_<variant> -> eval_<row>
"""
from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path

from dgpo_lib.io_utils import seed_everything
from dgpo_lib.methods import METHODS, method
from dgpo_lib.models.loading import (
    count_parameters,
    load_model,
    load_role,
    resolve_model_path,
)
from dgpo_lib.pipeline.keys import row_stage

log = logging.getLogger("dgpo_lib.pipeline")


def run_student(run) -> str:
    """The pruned student after healing (dgpo_lib/train/heal.py): distilled from the unpruned base on corpus text."""
    from dgpo_lib.train.heal import heal_student

    c, m, name = run.cfg, run.cfg.models, "student"
    out = run.stage_dir(name) / "model"
    with run.records.running(name) as info:
        seed_everything(c.seed)
        started = time.time()
        pruned = run.pruned_student_path()  # the greedy layer choice runs here when it is not cached
        student, tok = load_model(pruned, m.dtype, run.device)
        info.update(layer_choice_work(Path(pruned), started, run.stage_dir(name)))
        base, _ = load_model(run.pruned_student_path(pruned=False), m.dtype, run.device)
        texts, held_out, gold = run.resources.healing_texts()
        info.update(heal_student(student, base, tok, texts, held_out, c, run.stage_dir(name), out, run.progress))
        info.update(n_gold_excluded=len(gold),
                    parameters={"student": count_parameters(student), "base": count_parameters(base)})
    return str(out)


def layer_choice_work(pruned: Path, started: float, stage_dir: Path) -> dict:
    """What the student's record says of the greedy layer choice when this stage made it (a choice another run made
    and cached costs this stage nothing): its work time, and the part earlier processes of this stage did, which
    the record adds to the stage's work (`records.work_s`): rounds before a resumed choice, or the whole choice when
    an earlier process finished it and was stopped while healing (`layer_choice.json` in the stage's folder keeps it
    for them). Rounds timed by no process are counted, not guessed."""
    from dgpo_lib.io_utils import atomic_write_json

    kept = stage_dir / "layer_choice.json"
    info = json.loads((pruned / "dgpo_model.json").read_text()) if (pruned / "dgpo_model.json").exists() else {}
    rounds = info.get("calibration_round_work_s")
    if rounds is not None and info.get("written_by_pid") == os.getpid() and info.get("written_at", 0) >= started:
        made = {"layer_choice_work_s": round(sum(r or 0.0 for r in rounds), 1)}
        if any(r is None for r in rounds):
            made["layer_choice_untimed_rounds"] = sum(r is None for r in rounds)
        atomic_write_json(kept, made)
        earlier = rounds[:info.get("calibration_rounds_resumed", 0)]
        return {**made, "earlier_work_outside_loop_s": round(sum(r or 0.0 for r in earlier), 1)}
    if kept.exists():  # an earlier process of this stage made it
        made = json.loads(kept.read_text())
        return {**made, "earlier_work_outside_loop_s": made["layer_choice_work_s"]}
    return {}


def run_teacher(run) -> str:
    """The teacher made into a search agent: SFT on oracle trajectories of training questions, then
    `teacher.rft_rounds` rejection-sampling rounds (dgpo_lib/train/rejection.py), then PPO when `teacher.ppo_steps`."""
    from dgpo_lib.train.budget import rl_budget
    from dgpo_lib.train.rl import train_rl
    from dgpo_lib.train.trajectories import (
        oracle_trajectories,
        save_dataset,
        seqs_of,
        summarize,
        trajectories_to_dataset,
    )

    c, name, t = run.cfg, "teacher", run.cfg.teacher
    out = run.stage_dir(name) / "model"
    after_sft = bool(t.rft_rounds or t.ppo_steps)
    with run.records.running(name) as info:
        seed_everything(c.seed)
        qs = run.resources.train_questions()[: t.sft_questions]
        sft = finished_sft_teacher(run) if after_sft else None
        if sft is not None:  # the same SFT finished as a teacher stage of its own: start from its model
            model_dir, tok = sft["model"], run.tokenizer("teacher")
            info.update(sft_from=sft["stage_key"], oracle=sft["oracle"], earlier_work_outside_loop_s=sft["work_s"])
            copy_logs(Path(sft["folder"]) / "sft", run.stage_dir(name) / "sft")  # its curves, read with this stage's
        else:
            base, tok = load_role(c, "teacher")
            oracle = oracle_trajectories(run.resources.env(base, tok, True), qs, c.rollout.batch_size, run.progress)
            save_dataset(trajectories_to_dataset(oracle), run.stage_dir(name) / "oracle", c)
            model_dir = str(run.stage_dir(name) / ("sft_model" if after_sft else "model"))
            teacher_sft(run, base, tok, seqs_of(oracle), run.stage_dir(name) / "sft", Path(model_dir))
            info["oracle"] = summarize(oracle)
        every = run.resources.train_questions()
        for r in range(1, t.rft_rounds + 1):
            last = r == t.rft_rounds and not t.ppo_steps
            model_dir = rft_round(run, tok, model_dir, every[: t.rft_questions or t.sft_questions], r,
                                  out if last else run.stage_dir(name) / f"rft_{r}_model", info)
        if t.ppo_steps:  # Search-R1's PPO on the SFT teacher, with its own number of steps
            actor, _ = load_model(model_dir, c.models.dtype, run.device)
            train_rl(METHODS["ppo"].rl, actor, tok, model_dir, None, qs, lambda a, q: run.resources.env(a, tok, False).run(q),
                     c, rl_budget(c, t.ppo_steps), run.stage_dir(name) / "ppo", progress=run.progress, out_dir=out)
    return str(out)


def finished_sft_teacher(run) -> dict | None:
    """The teacher stage of this config without rejection sampling or PPO, when it has finished here and kept its
    model: its SFT is this stage's, so a stage that adds rounds after it starts from that model (its record's
    work joins this one's). None otherwise."""
    import copy

    from dgpo_lib.pipeline.records import work_s

    plain = copy.deepcopy(run.cfg)
    plain.teacher.rft_rounds, plain.teacher.ppo_steps = 0, 0
    other = type(run)(plain, progress=run.progress)  # a Run of that config: its folders and records
    folder, record = other.stage_dir("teacher"), other.stage_info("teacher")
    if not record or not (folder / "model").exists():
        return None
    return {"model": str(folder / "model"), "folder": str(folder), "stage_key": other.stage_key("teacher"),
            "oracle": record.get("oracle"), "work_s": round(work_s(record), 1)}


def copy_logs(src: Path, dst: Path) -> None:
    """A training's logs (its loss and validation curves), not its resumption records, whose work another stage's
    record already counts."""
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    for f in ("metrics.jsonl", "val_metrics.jsonl"):
        if (src / f).exists():
            shutil.copyfile(src / f, dst / f)


def teacher_sft(run, model, tok, seqs, run_dir: Path, out_dir: Path) -> None:
    """One SFT of the teacher (`teacher.sft_*` budget, an epoch per `teacher.sft_epochs`) on `seqs`, with its
    validation curve, saved to `out_dir`: on oracle trajectories, and in each rejection-sampling round."""
    from dgpo_lib.train.budget import teacher_sft_budget
    from dgpo_lib.train.kd import train_kd

    vf = run.resources.val_fn(tok)
    train_kd(METHODS["seqkd"].kd, model, tok, None, seqs, run.cfg, teacher_sft_budget(run.cfg, len(seqs)), run_dir,
             progress=run.progress, out_dir=out_dir, val_fn=(lambda step: vf(model, step)) if vf else None)


def rft_round(run, tok, start: str, qs, r: int, out_dir: Path, info: dict) -> str:
    """Rejection-sampling round r: the teacher in `start` samples an episode per training question at
    `teacher.rft_temperature`, then trains one SFT epoch on its correct ones (`teacher/rft_<r>/`: the samples,
    the training log and its validation curve) and is saved to `out_dir`."""
    from dgpo_lib.models.policy import save_policy
    from dgpo_lib.train.rejection import sample_correct

    c, t = run.cfg, run.cfg.teacher
    folder = run.stage_dir("teacher") / f"rft_{r}"
    model, _ = load_model(start, c.models.dtype, run.device)
    env = run.resources.env(model, tok, greedy=False)
    env.s.temperature = t.rft_temperature
    seqs, summary = sample_correct(env, qs, folder / "samples", c.seed, r, c.rollout.batch_size, c, run.progress)
    info[f"rft_{r}"] = summary
    info["earlier_work_outside_loop_s"] = info.get("earlier_work_outside_loop_s", 0.0) + summary["earlier_work_s"]
    if not seqs:  # nothing to learn from: the round leaves the teacher as it was
        log.warning("teacher: rejection-sampling round %d kept none of %d episodes; the teacher stays as it was",
                    r, len(qs))
        save_policy(model, tok, out_dir)
        return str(out_dir)
    teacher_sft(run, model, tok, seqs, folder, out_dir)
    return str(out_dir)


def run_tgo(run):
    """Teacher-generated outputs: the teacher's greedy trajectories on training questions, the correct ones kept
    (the KD data), and the same on the validation questions (held-out teacher text, never trained on)."""
    from dgpo_lib.env.rollout import run_batched
    from dgpo_lib.train.trajectories import (
        save_dataset,
        summarize,
        trajectories_to_dataset,
        val_dataset_dir,
        write_records,
    )

    c, name = run.cfg, "tgo"
    out = run.stage_dir(name) / "dataset"
    teacher_path = run.output("teacher")
    with run.records.running(name) as info:
        seed_everything(c.seed)
        teacher, tok = run.load("teacher")
        qs = run.resources.train_questions()[: c.kd.tgo_questions]
        env = run.resources.env(teacher, tok, greedy=c.kd.tgo_temperature == 0, model_path=teacher_path)
        if c.kd.tgo_temperature > 0:
            env.s.temperature = c.kd.tgo_temperature
        trajs = run_batched(env, qs, c.rollout.batch_size, desc="teacher rollouts", progress=run.progress)
        write_records(run.stage_dir(name) / "all_records.jsonl", trajs)
        correct = [t for t in trajs if t.em == 1.0]
        save_dataset(trajectories_to_dataset(correct), out, c, n_questions=len(qs))
        val = [t for t in run_batched(env, run.resources.val_questions(), c.rollout.batch_size,
                                      desc="teacher rollouts (validation)", progress=run.progress) if t.em == 1.0]
        if val:
            save_dataset(trajectories_to_dataset(val), val_dataset_dir(run.stage_dir(name)), c,
                         n_questions=len(run.resources.val_questions()))
        info.update(all=summarize(trajs), kept=summarize(correct), val_kept=len(val))
    return out


def run_kd(run, row: str) -> str:
    """A KD baseline on the TGO data, or a GKD ablation (on-policy GKD from the row its method starts from)."""
    from dgpo_lib.train.budget import kd_budget
    from dgpo_lib.train.kd import train_kd
    from dgpo_lib.train.trajectories import load_seqs, seqs_of, val_dataset_dir

    m, cfg, name = method(row), run.cfg, f"kd_{row}"
    if m.stage != "kd":
        raise ValueError(f"{row!r} is not trained by a KD stage (KD rows: "
                         f"{', '.join(n for n, x in METHODS.items() if x.stage == 'kd')})")
    tgo = run.output("tgo")
    start_path = run.output(METHODS[m.start].stage_name)
    run.output("teacher")
    out = run.stage_dir(name) / "model"
    with run.records.running(name) as info:
        seqs = load_seqs(tgo)
        teacher, tok = run.load("teacher")
        seed_everything(cfg.seed)
        student, _ = load_model(start_path, cfg.models.dtype, run.device)
        qs = run.resources.train_questions()

        def student_rollout(step: int, n: int):  # greedy, as TAID's sampler generates
            pick = random.Random(f"{cfg.seed}:{row}:sgo:{step}").sample(range(len(qs)), min(n, len(qs)))
            return seqs_of(run.resources.env(student, tok, greedy=True).run([qs[i] for i in pick]))

        held_out = []
        if m.kd.data == "adaptive":
            held_out = load_seqs(val_dataset_dir(run.stage_dir("tgo")))
            if not held_out:  # the teacher solved no validation question: hold out some of its training text
                n = min(cfg.kd.distillm_val_seqs, len(seqs) // 4)
                seqs, held_out = (seqs[:-n], seqs[-n:]) if n else (seqs, seqs[:1])
                log.warning("%s: no teacher text on validation questions; %s", name, f"{n} TGO sequences held out"
                            if n else "too few TGO sequences to hold any out: the first one is also trained on")
        vf = run.resources.val_fn(tok)
        train_kd(m.kd, student, tok, teacher, seqs, cfg, kd_budget(cfg), run.stage_dir(name), student_rollout,
                 progress=run.progress, out_dir=out, val_fn=(lambda step: vf(student, step)) if vf else None,
                 held_out=held_out)
        info["n_sequences"] = len(seqs)
        if not m.table:
            info["start"] = m.start
    return str(out)


def run_rl(run, row: str) -> str:
    """PPO with a critic from the student (`ppo`) or from the KD cold start with the teacher as reference and
    DGPO's selective KL (`dgpo`), and the ablation variants (dgpo_lib/train/rl.py)."""
    from dgpo_lib.train.budget import rl_budget
    from dgpo_lib.train.rl import train_rl

    m = method(row)
    if m.stage != "rl":
        raise ValueError(f"{row!r} is not trained by an RL stage (RL rows: "
                         f"{', '.join(n for n, x in METHODS.items() if x.stage == 'rl')}, dgpo_beta_<x>)")
    v, name = m.rl if m.rl.beta is not None else m.rl.with_beta(run.cfg.rl.beta), f"rl_{row}"
    if m.start == "kd" and run.cfg.rl.cold_start:  # a released cold-start checkpoint (rl.cold_start)
        start_path = resolve_model_path(run.cfg.rl.cold_start, "student")
    else:
        start_path = run.output(METHODS[m.start].stage_name)
    run.output("teacher")
    out = run.stage_dir(name) / "model"
    with run.records.running(name) as info:
        teacher, tok = run.load("teacher")
        seed_everything(run.cfg.seed)
        actor, _ = load_model(start_path, run.cfg.models.dtype, run.device)
        train_rl(v, actor, tok, start_path, teacher, run.resources.train_questions(),
                 lambda a, q: run.resources.env(a, tok, greedy=False).run(q), run.cfg, rl_budget(run.cfg), run.stage_dir(name),
                 progress=run.progress, out_dir=out, val_fn=run.resources.val_fn(tok))
        info["variant"] = {"start": m.start, **v.__dict__}
    return str(out)


def same_weights_row(run, row: str) -> str | None:
    """An already evaluated row whose checkpoint holds exactly the weights of RL row `row`, else None. An RL run
    whose validation picks its first or its last step selects its starting model or its final checkpoint, and the
    greedy evaluation of those weights is on disk."""
    from dgpo_lib.models.loading import same_weights

    if not row_stage(row).startswith("rl_"):
        return None
    base = row.partition("@")[0]
    start = method(base).start
    path = run.model_path(row)
    for other in (base, f"{base}@final", f"{base}@best_val", start):
        if other != row and run.is_done(f"eval_{other}") and same_weights(run.model_path(other), path):
            return other
    return None


def run_eval(run, row: str) -> dict:
    """Greedy EM of a results-table row on every evaluation set (per-question records kept)."""
    from dgpo_lib.evaluation.evaluate import copy_evaluation, evaluate

    name = f"eval_{row}"
    run.stage(row_stage(row))
    with run.records.running(name) as info:
        twin = same_weights_row(run, row)
        if twin is not None:
            log.info("%s: the checkpoint holds the weights of row %s; its evaluation is reused", name, twin)
            info["same_weights_as"] = f"eval_{twin}"
            return copy_evaluation(run.stage_dir(f"eval_{twin}"), run.stage_dir(name), row, twin)
        model, tok = run.load(row)
        seed_everything(run.cfg.seed)
        summary = evaluate(model, tok, run.resources.retriever(), run.resources.eval_sets(), run.cfg, run.stage_dir(name), row,
                           progress=run.progress, model_path=run.model_path(row))
    return summary


# The stage graph's kinds, each run by one function (`Run.stage` looks a stage's kind up here); kd, rl and eval
# stages are named `<kind>_<row>` and get the row.
STAGES = {"student": run_student, "teacher": run_teacher, "tgo": run_tgo, "kd": run_kd, "rl": run_rl,
          "eval": run_eval}

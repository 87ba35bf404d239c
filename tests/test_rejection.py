"""The teacher's rejection-sampling round (dgpo_lib/train/rejection.py, pipeline/stages.rft_round): only correct
episodes are kept, a stopped round resumes at its first unwritten chunk and samples what an unbroken one would,
and a teacher stage with a round starts from the same config's finished SFT teacher instead of training it again."""
import json
import shutil
from pathlib import Path

import pytest

from dgpo_lib.config import load_config
from dgpo_lib.data.loaders import load_eval_sets
from dgpo_lib.env.rollout import RolloutSettings, SearchEnv
from dgpo_lib.pipeline import Run, keys
from dgpo_lib.pipeline.records import work_s
from dgpo_lib.train import rejection


def _questions(cfg, n):
    sets = load_eval_sets(cfg)
    return (sets["nq_ctx"] + sets["hotpotqa_ctx"])[:n]


def test_only_correct_episodes_are_kept_and_a_stopped_round_resumes(smoke_cfg, tiny, dense, scripted, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setattr(rejection, "CHUNK_QUESTIONS", 2)
    _, tok = tiny
    qs = _questions(smoke_cfg, 5)
    right = {q.question for q in qs[::2]}  # questions 0, 2, 4 answered with their gold answer

    def env():
        scripts = {q.question: [f"<answer> {q.golden_answers[0] if q.question in right else 'nobody'} </answer>"]
                   for q in qs}
        return SearchEnv(scripted(tok, scripts), dense, tok, RolloutSettings.from_config(smoke_cfg, greedy=False))

    seqs, summary = rejection.sample_correct(env(), qs, tmp_path, 0, 1, 2, smoke_cfg, progress=False)
    assert (summary["questions"], summary["kept"], summary["chunks"], len(seqs)) == (5, 3, 3, 3)
    assert summary["em"] == pytest.approx(0.6) and summary["earlier_work_s"] == 0.0
    first = json.loads((tmp_path / "chunk_0000" / "made_by.json").read_text())["chunk"]
    assert (first["n"], first["kept"]) == (2, 1)

    shutil.rmtree(tmp_path / "chunk_0001")  # stopped while sampling the second chunk
    again, resumed = rejection.sample_correct(env(), qs, tmp_path, 0, 1, 2, smoke_cfg, progress=False)
    assert [s.response_ids for s in again] == [s.response_ids for s in seqs]
    assert {k: v for k, v in resumed.items() if k != "earlier_work_s"} == \
        {k: v for k, v in summary.items() if k != "earlier_work_s"}
    last = json.loads((tmp_path / "chunk_0002" / "made_by.json").read_text())["chunk"]
    assert resumed["earlier_work_s"] == pytest.approx(first["work_s"] + last["work_s"], abs=0.2)


def test_a_resumed_round_samples_what_an_unbroken_one_would(smoke_cfg, tiny, dense, tmp_path, monkeypatch):
    """Each chunk's sampling seed is fixed: the episodes sampled after a resume equal an unbroken round's."""
    from dgpo_lib.generation.continuous import ContinuousGenerator
    monkeypatch.setattr(rejection, "CHUNK_QUESTIONS", 2)
    model, tok = tiny
    qs = _questions(smoke_cfg, 4)
    sampled = []

    def env():
        e = SearchEnv(ContinuousGenerator(model, tok), dense, tok, RolloutSettings.from_config(smoke_cfg, False))
        run = e.run
        e.run = lambda part, **kw: sampled.append(out := run(part, **kw)) or out  # every sampled chunk
        return e

    _, whole = rejection.sample_correct(env(), qs, tmp_path / "a", 0, 1, 2, smoke_cfg, progress=False)
    unbroken = [t.response_ids for t in sampled[1]]
    shutil.rmtree(tmp_path / "a" / "chunk_0001")
    _, resumed = rejection.sample_correct(env(), qs, tmp_path / "a", 0, 1, 2, smoke_cfg, progress=False)
    assert len(sampled) == 3 and [t.response_ids for t in sampled[2]] == unbroken
    assert resumed["model_tokens"] == whole["model_tokens"]
    assert [t.response_ids for t in sampled[0]] != unbroken  # chunks draw with different seeds


def test_a_round_is_hashed_only_when_it_is_on(smoke_cfg):
    """Rejection sampling off keeps the teacher's key (stages finished before the option existed are reused) and the
    config's hash."""
    import copy
    plain = keys.stage_key(smoke_cfg, "teacher")
    off = copy.deepcopy(smoke_cfg)
    off.teacher.rft_temperature, off.teacher.rft_questions = 0.5, 3
    assert keys.stage_key(off, "teacher") == plain
    assert off.hash() == smoke_cfg.hash()  # nor the run's folder and the chapters' config hash
    on = copy.deepcopy(smoke_cfg)
    on.teacher.rft_rounds = 1
    assert keys.stage_key(on, "teacher") != plain and on.hash() != smoke_cfg.hash()
    on2 = copy.deepcopy(on)
    on2.teacher.rft_temperature = 0.5
    assert keys.stage_key(on2, "teacher") != keys.stage_key(on, "teacher")


def test_a_teacher_with_a_round_starts_from_the_finished_sft_teacher(tmp_path, monkeypatch):
    """The round's SFT trains on the kept episodes (here: stand-in samples, the SFT stage's own oracle text, since a
    tiny random teacher answers nothing right), writes its validation curve, and the stage's record carries the SFT
    stage's work and the round's summary."""
    from dgpo_lib.train.trajectories import load_seqs
    over = {"run_root": str(tmp_path), "teacher.sft_questions": 8, "eval.val_points": 1, "data.n_val": 4}
    sft = Run(load_config("smoke", over), progress=False)
    sft.teacher()
    oracle = load_seqs(sft.stage_dir("teacher") / "oracle")
    calls = []

    def stand_in(env, qs, folder, seed, round_, batch_size, cfg, progress=True):
        calls.append((len(qs), env.s.temperature))
        return oracle, {"questions": len(qs), "em": 1.0, "kept": len(oracle), "earlier_work_s": 7.0}

    monkeypatch.setattr(rejection, "sample_correct", stand_in)
    run = Run(load_config("smoke", {**over, "teacher.rft_rounds": 1, "teacher.rft_temperature": 0.7}), progress=False)
    out = run.teacher()
    done = run.stage_info("teacher")
    assert calls == [(8, 0.7)]
    assert done["sft_from"] == sft.stage_key("teacher") and done["oracle"] == sft.stage_info("teacher")["oracle"]
    assert done["rft_1"]["kept"] == len(oracle)
    sft_work = work_s(sft.stage_info("teacher"))
    assert done["earlier_processes_work_s"] == pytest.approx(sft_work + 7.0, abs=0.2)
    assert not (run.stage_dir("teacher") / "sft_model").exists()  # no second SFT: its curves are copied
    assert run.metrics("teacher/sft") == sft.metrics("teacher/sft")
    assert run.metrics("teacher/sft", "val_metrics.jsonl") == sft.metrics("teacher/sft", "val_metrics.jsonl")
    assert not list(run.stage_dir("teacher").rglob("resumed.json"))
    curve = run.metrics("teacher/rft_1", "val_metrics.jsonl")
    assert curve and curve[0]["step"] == 0
    assert out == str(run.stage_dir("teacher") / "model") and Path(out, "config.json").exists()

"""A run's committed results (no weights) restored into a fresh run root count as finished stages, keep their
protocol probes, and are refused under another config's keys."""
import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dgpo_lib.pipeline import Run
from dgpo_lib.evaluation.probes import PROBE_FILE, protocol_frame

REPO = Path(__file__).resolve().parent.parent


def _script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def collected(tmp_path_factory, smoke_cfg):
    """A smoke run through kd_kd with the probes of three rows, collected as collect_results.py does."""
    root = tmp_path_factory.mktemp("trained")
    cfg = copy.deepcopy(smoke_cfg)
    cfg.run_root = str(root)
    run = Run(cfg, progress=False)
    run.kd("kd")
    probe = protocol_frame(run, ["student", "kd", "teacher"])
    out = tmp_path_factory.mktemp("results") / "smoke"
    subprocess.run([sys.executable, str(REPO / "scripts" / "collect_results.py"), "--preset", "smoke", "--out",
                    str(out), f"run_root={root}"], check=True, capture_output=True)
    return run, probe, out


def test_restored_stages_are_finished_without_weights_and_keep_their_probes(collected, tmp_path, smoke_cfg):
    trained, probe, results = collected
    assert (results / "kd_kd" / PROBE_FILE).exists() and not (results / "kd_kd" / "model").exists()
    (results / "teacher" / PROBE_FILE).rename(tmp_path / "teacher_probe.json")  # as if the teacher's were not kept
    try:
        cfg = copy.deepcopy(smoke_cfg)
        cfg.run_root = str(tmp_path / "restored")
        run = Run(cfg, progress=False)
        report = _script("restore_results").restore(run, results)
    finally:
        (tmp_path / "teacher_probe.json").rename(results / "teacher" / PROBE_FILE)
    assert report["kd_kd"] == "restored" and report["kd_seqkd"] == "not in the results"
    assert run.is_done("kd_kd") and not Path(run.kd("kd")).exists()  # finished, and no training ran
    assert run.stage_info("kd_kd") == trained.stage_info("kd_kd")
    again = protocol_frame(run, ["student", "kd", "teacher", "seqkd"])
    assert list(again.index) == ["student", "kd"] and again.attrs["missing"] == ["teacher", "seqkd"]
    assert again.loc["kd", "answer words"] == probe.loc["kd", "answer words"]


def test_restore_refuses_stages_of_another_config(collected, tmp_path, smoke_cfg):
    _, _, results = collected
    cfg = copy.deepcopy(smoke_cfg)
    cfg.run_root, cfg.kd.lr = str(tmp_path), smoke_cfg.kd.lr * 2  # KD reads kd.*; healing, teacher and TGO do not
    run = Run(cfg, progress=False)
    report = _script("restore_results").restore(run, results)
    assert report["student"] == "restored" and report["tgo"] == "restored"
    assert report["kd_kd"].startswith("refused") and not run.is_done("kd_kd")
    again = _script("restore_results").restore(run, results, {"kd_kd"})
    assert again["student"] == "already finished in the run root" and again["kd_kd"].startswith("restored (key")
    assert json.loads((run.stage_dir("kd_kd") / "done.json").read_text())["stage"] == "kd_kd"


def test_a_stage_that_reads_restored_weights_says_how_to_train_them(collected, tmp_path, smoke_cfg):
    from dgpo_lib.pipeline.run import StageNotDone
    _, _, results = collected
    cfg = copy.deepcopy(smoke_cfg)
    cfg.run_root = str(tmp_path)
    run = Run(cfg, progress=False)
    _script("restore_results").restore(run, results)
    with pytest.raises(StageNotDone, match="kd_kd: finished, but its output is not on this machine"):
        run.rl("dgpo")  # DGPO starts from the KD student, whose record came without its weights
    assert not run.is_done("rl_dgpo") and not (run.stage_dir("rl_dgpo") / "done.json").exists()


def test_restore_can_be_limited_to_named_stages(collected, tmp_path, smoke_cfg):
    _, _, results = collected
    cfg = copy.deepcopy(smoke_cfg)
    cfg.run_root = str(tmp_path)
    run = Run(cfg, progress=False)
    restore = _script("restore_results").restore
    with pytest.raises(ValueError, match="--stage eval_nope: not a stage of this config"):
        restore(run, results, only={"eval_nope"})
    assert restore(run, results, only={"student"}) == {"student": "restored"}
    assert run.is_done("student") and not run.is_done("teacher")

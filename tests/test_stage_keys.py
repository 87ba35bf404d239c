"""Per-stage cache keys: a stage reruns only when what it reads of the config, or an upstream stage, changes."""
import copy

from dgpo_lib.pipeline import Run


def _keys(cfg):
    run = Run(cfg, progress=False)
    return {n: run.stage_key(n) for n in run.stage_names()}


def _changed(cfg, **edits):
    c = copy.deepcopy(cfg)
    for dotted, v in edits.items():
        section, key = dotted.split("__")
        setattr(getattr(c, section), key, v)
    a, b = _keys(cfg), _keys(c)
    return {n for n in a if a[n] != b[n]}


def test_changing_rl_beta_reruns_rl_and_its_evaluations_only(smoke_cfg):
    changed = _changed(smoke_cfg, rl__beta=0.5)
    assert changed and all(n.startswith(("rl_", "eval_")) for n in changed)
    assert "eval_dgpo" in changed and "eval_kd" not in changed and "eval_teacher" not in changed


def test_changing_kd_steps_keeps_the_teacher_and_ppo(smoke_cfg):
    changed = _changed(smoke_cfg, kd__steps=7)
    assert {"kd_kd", "kd_taid", "rl_dgpo", "eval_dgpo", "eval_kd"} <= changed
    assert not changed & {"student", "teacher", "tgo", "rl_ppo", "eval_ppo", "eval_student", "eval_teacher"}


def test_changing_the_student_reruns_every_student_row_but_not_the_teacher(smoke_cfg):
    changed = _changed(smoke_cfg, models__heal_steps=3)
    assert {"student", "kd_kd", "rl_ppo", "rl_dgpo", "eval_student"} <= changed
    assert not changed & {"teacher", "tgo", "eval_teacher"}


def test_a_micro_batch_that_only_saves_memory_keeps_every_key(smoke_cfg):
    assert _changed(smoke_cfg, teacher__sft_micro_batch=1) == set()
    assert "teacher" in _changed(smoke_cfg, teacher__sft_batch=3)


def test_changing_data_or_the_seed_reruns_everything(smoke_cfg):
    every = set(_keys(smoke_cfg))
    assert _changed(smoke_cfg, data__n_eval=5) == every
    c = copy.deepcopy(smoke_cfg)
    c.seed = 1
    assert not set(_keys(smoke_cfg).values()) & set(_keys(c).values())


def test_stage_folders_are_named_by_their_key(smoke_cfg, tmp_path):
    c = copy.deepcopy(smoke_cfg)
    c.run_root = str(tmp_path)
    run = Run(c, progress=False)
    d = run.stage_dir("kd_kd")
    assert d.name == "kd_kd" and d.parent.name == f"smoke-{run.stage_key('kd_kd')}" and d.parent.parent == tmp_path


def test_a_released_cold_start_replaces_the_kd_stage_upstream_of_dgpo(smoke_cfg):
    c = copy.deepcopy(smoke_cfg)
    c.rl.cold_start = "some/released-kd-checkpoint"
    run = Run(c, progress=False)
    assert run.upstream("rl_dgpo") == ["student", "teacher"] and run.upstream("rl_ppo") == ["student", "teacher"]
    assert Run(smoke_cfg, progress=False).upstream("rl_dgpo") == ["kd_kd", "teacher"]


def test_the_gkd_ablations_are_kd_stages_from_their_own_start(smoke_cfg):
    run = Run(smoke_cfg, progress=False)
    assert run.upstream("kd_gkd_onpolicy") == ["tgo", "student"]
    assert run.upstream("kd_kd_then_gkd") == ["tgo", "kd_kd"]
    assert run.upstream("eval_kd_then_gkd") == ["kd_kd_then_gkd"]
    assert {"kd_gkd_onpolicy", "kd_kd_then_gkd"} <= set(run.stage_names())


def test_paths_and_models_of_unfinished_stages_are_never_trained_on_the_way(smoke_cfg, tmp_path):
    import pytest

    from dgpo_lib.pipeline import StageNotDone
    c = copy.deepcopy(smoke_cfg)
    c.run_root = str(tmp_path)
    run = Run(c, progress=False)
    for row, stage in (("kd", "kd_kd"), ("dgpo@best_val", "rl_dgpo"), ("teacher", "teacher")):
        with pytest.raises(StageNotDone, match=f"python -m dgpo_lib.stage {stage} --preset smoke"):
            run.load(row)
    assert not any(tmp_path.iterdir())  # nothing was trained or written

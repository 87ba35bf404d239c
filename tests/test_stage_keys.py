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


def test_gkd_and_distillm_from_the_seqkd_student_stand_in_for_the_papers_rows(smoke_cfg):
    """The cpu preset's GKD and DistiLLM start from the SeqKD student, as their own papers start from a supervised
    student: trained after it, keyed by it, and compared with the paper's GKD and DistiLLM rows."""
    from dgpo_lib.book.tables import comparison_frame, paper_frame
    from dgpo_lib.methods import kd_baselines, paper_row, row_label
    from dgpo_lib.config import load_config

    c = copy.deepcopy(smoke_cfg)
    c.eval.methods = ["student", "teacher", "gkd_sft", "seqkd", "kd", "distillm_sft", "taid", "dgpo"]
    run = Run(c, progress=False)
    assert run.upstream("kd_gkd_sft") == run.upstream("kd_distillm_sft") == ["tgo", "kd_seqkd"]
    names = run.stage_names()
    assert names.index("kd_seqkd") < names.index("kd_gkd_sft") and "kd_gkd" not in names
    both = copy.deepcopy(c)
    both.eval.methods = [*c.eval.methods, "gkd"]  # the same method from two starts: two stages, two keys
    assert Run(both, progress=False).stage_key("kd_gkd_sft") != Run(both, progress=False).stage_key("kd_gkd")
    assert kd_baselines(c.eval.methods) == ["gkd_sft", "seqkd", "kd", "distillm_sft", "taid"]
    assert kd_baselines(["gkd_onpolicy", "kd_then_gkd", "dgpo", "gkd"]) == ["gkd"]  # ablations are not baselines
    assert paper_row("gkd_sft") == "gkd" and paper_row("gkd_onpolicy") is None
    assert row_label("distillm_sft") == "DistiLLM (from the SeqKD student)"
    paper = paper_frame(["gkd_sft", "kd"])
    assert list(paper.index) == ["GKD", "KD"] and paper.loc["GKD", "Avg"] == 0.240
    res = {"preset": "cpu", "avg_em": {"gkd_sft": 0.1}}
    assert comparison_frame(res, ["gkd_sft"]).iloc[0].tolist() == [0.1, 0.240]
    assert load_config("cpu").eval.methods[3] == "gkd_sft" and "dgpo_kl_always" in load_config("cpu").eval.ablations


def test_paths_and_models_of_unfinished_stages_are_never_trained_on_the_way(smoke_cfg, tmp_path):
    import pytest

    from dgpo_lib.pipeline import StageNotDone
    c = copy.deepcopy(smoke_cfg)
    c.run_root = str(tmp_path)
    run = Run(c, progress=False)
    for row, stage in (("kd", "kd_kd"), ("dgpo@best_val", "rl_dgpo"), ("teacher", "teacher")):
        with pytest.raises(StageNotDone, match=f"python -m dgpo_lib.pipeline.run_stage {stage} --preset smoke"):
            run.load(row)
    assert not any(tmp_path.iterdir())  # nothing was trained or written


def test_an_rl_checkpoint_with_the_weights_of_an_evaluated_row_reuses_its_evaluation(smoke_cfg, tiny, tmp_path):
    """DGPO's validation picking step 0 selects the KD cold start itself: its greedy evaluation is KD's, copied and
    relabelled; a checkpoint with other weights is not matched."""
    import json
    import time

    import torch

    from dgpo_lib.models.loading import same_weights
    from dgpo_lib.pipeline.stages import same_weights_row
    from dgpo_lib.io_utils import best_val_dir

    c = copy.deepcopy(smoke_cfg)
    c.run_root, c.eval.rl_checkpoint = str(tmp_path), "best_val"
    run = Run(c, progress=False)
    model, tok = tiny
    kd, final = run.stage_dir("kd_kd") / "model", run.stage_dir("rl_dgpo") / "model"
    model.save_pretrained(kd)
    model.save_pretrained(best_val_dir(final))
    (best_val_dir(final) / "selected.json").write_text(json.dumps({"step": 0}))
    moved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    model.save_pretrained(final)
    model.load_state_dict(moved)
    ev = run.stage_dir("eval_kd")
    ev.mkdir(parents=True)
    (ev / "records_nq_ctx.jsonl").write_text('{"id": "1", "em": 1.0}\n')
    (ev / "summary.json").write_text(json.dumps({"method": "kd", "avg_em": 0.5, "per_set": {}}))
    for stage in ("kd_kd", "rl_dgpo", "eval_kd"):
        run.records.mark_done(stage, time.time())

    assert same_weights(kd, best_val_dir(final)) and not same_weights(kd, final)
    assert same_weights_row(run, "dgpo") == "kd" and same_weights_row(run, "dgpo@final") is None
    summary = run.stage("eval_dgpo")
    assert summary["method"] == "dgpo" and summary["avg_em"] == 0.5 and summary["same_weights_as"] == "kd"
    out = run.stage_dir("eval_dgpo")
    assert (out / "records_nq_ctx.jsonl").read_text() == '{"id": "1", "em": 1.0}\n'
    assert run.stage_info("eval_dgpo")["same_weights_as"] == "eval_kd"


def test_the_last_step_of_each_rl_row_is_a_stage_when_the_table_shows_selected_checkpoints(smoke_cfg):
    c = copy.deepcopy(smoke_cfg)
    c.eval.rl_checkpoint = "final"
    assert not any(n.endswith("@final") for n in Run(c, progress=False).stage_names())
    c.eval.rl_checkpoint = "best_val"
    finals = [n for n in Run(c, progress=False).stage_names() if n.endswith("@final")]
    assert finals == [f"eval_{r}@final" for r in c.eval.methods if r in ("ppo", "dgpo")]

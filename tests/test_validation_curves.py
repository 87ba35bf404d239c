"""Learning curves on the validation slice: greedy EM of training questions held out of training, before the first
step, every `eval.val_every` steps and at the end; a resumed run neither repeats nor loses a point."""
import copy
import json


def test_kd_writes_a_validation_curve_and_resumes_it(smoke_cfg, tmp_path, monkeypatch):
    from dgpo_lib.data.loaders import load_val_questions
    from dgpo_lib.pipeline import Run, StageRecords

    cfg = copy.deepcopy(smoke_cfg)
    cfg.run_root = str(tmp_path)
    cfg.data.n_val, cfg.eval.val_every, cfg.kd.steps, cfg.train.save_every = 3, 2, 3, 2
    assert len(load_val_questions(cfg)) == 3
    run = Run(cfg, progress=False)
    real = StageRecords.mark_done
    with monkeypatch.context() as m:  # as if killed right after KD's last step: not marked done, checkpoints kept
        m.setattr(StageRecords, "mark_done",
                  lambda self, name, *a, **k: None if name == "kd_seqkd" else real(self, name, *a, **k))
        run.kd("seqkd")
    path = run.stage_dir("kd_seqkd") / "val_metrics.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 2, 3]
    assert all(0.0 <= r["val_em"] <= 1.0 and "val_searches" in r for r in rows)
    # resume after the step-2 checkpoint: the step-3 point is recomputed once, the others kept
    import shutil
    shutil.rmtree(run.stage_dir("kd_seqkd") / "ckpt" / "step_3")
    again = Run(cfg, progress=False)
    again.kd("seqkd")
    rows2 = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["step"] for r in rows2] == [0, 2, 3]
    assert [r["val_em"] for r in rows2] == [r["val_em"] for r in rows]
    # the record counts the steps and validations the first process did up to the checkpoint resumed from
    kept = [json.loads(x) for x in (run.stage_dir("kd_seqkd") / "metrics.jsonl").read_text().splitlines()][:2]
    earlier = sum(r["step_s"] for r in kept) + sum(r["val_s"] for r in rows[:2])
    info = again.stage_info("kd_seqkd")
    assert abs(info["earlier_processes_s"] - round(earlier, 1)) <= 0.1
    # work time: each process's time weighted by the share of the machine it used (its threads over the cores)
    from dgpo_lib.io_utils import machine_share
    from dgpo_lib.pipeline.records import work_s
    share = machine_share()
    assert all(r["machine_share"] == share for r in kept + rows) and info["machine_share"] == share
    assert abs(info["earlier_processes_work_s"] - round(earlier * share, 1)) <= 0.1
    assert work_s(info) == info["wall_s"] * share + info["earlier_processes_work_s"]
    assert work_s({"wall_s": 100.0, "paused_s": 20, "earlier_processes_s": 50.0}) == 130.0  # an older record
    # once done, the stage's resumable checkpoints are removed and its model kept
    assert not (run.stage_dir("kd_seqkd") / "ckpt").exists()
    assert (run.stage_dir("kd_seqkd") / "model" / "model.safetensors").exists()


def test_rl_keeps_the_best_validation_checkpoint_and_rows_can_pin_it(smoke_cfg, tmp_path):
    from dgpo_lib.pipeline import Run

    cfg = copy.deepcopy(smoke_cfg)
    cfg.run_root = str(tmp_path)
    cfg.data.n_val, cfg.eval.val_every, cfg.rl.steps = 3, 1, 2
    run = Run(cfg, progress=False)
    final = run.rl("ppo")
    assert run.model_path("ppo@final") == final
    rows = [json.loads(x) for x in (run.stage_dir("rl_ppo") / "val_metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    best = run.model_path("ppo@best_val")
    picked = json.loads((tmp_path / best / "selected.json").read_text())
    ems = [r["val_em"] for r in rows]
    assert picked["step"] == rows[ems.index(max(ems))]["step"] and best != final
    from dgpo_lib.book.tables import selected_checkpoints
    assert selected_checkpoints(run, ["ppo"])["selected step"].tolist() == [picked["step"]]
    assert run.stage_key("eval_ppo@best_val") != run.stage_key("eval_ppo@final")
    assert run.evaluate("ppo@best_val")["avg_em"] >= 0.0


def test_probe_reading_names_the_models_that_give_a_tag_little_probability():
    import pandas as pd

    from dgpo_lib.book.readings import probe_reading

    probe = pd.DataFrame({"opens a search": [0.0, 0.99, 1.0], "opens the answer": [0.0, 0.2, 1.0],
                          "answer words": [0.2, 0.55, 0.9], "other tokens": [0.1, 0.9, 0.97]},
                         index=["student", "kd", "teacher"])
    text = probe_reading(probe)
    search, answer, words = text.split("\n")
    assert "`<search>`" in search and "Student (no training) (0.000)" in search and "KD" not in search
    assert "`<answer>`" in answer and "KD (0.200)" in answer
    assert words.index("KD 0.550") < words.index("Student (no training) 0.200") and "0.900" in words
    assert probe_reading(probe.drop("teacher")) == ""


def test_rl_reading_counts_rewards_and_says_when_the_selected_checkpoint_is_the_start():
    from dgpo_lib.book.readings import rl_reading
    step = lambda em, kl: {"em": em, "rollouts": 32.0, "kl_teacher": kl}  # noqa: E731
    curves = {"ppo": [step(0.0, 2.0), step(0.0, 1.9)], "dgpo": [step(1 / 32, 0.8), step(2 / 32, 0.7)]}
    val = {"ppo": [{"step": 0, "val_em": 0.0}, {"step": 2, "val_em": 0.0}],
           "dgpo": [{"step": 0, "val_em": 0.08}, {"step": 1, "val_em": 0.05}, {"step": 2, "val_em": 0.03}]}
    text = rl_reading(curves, val)
    ppo, dgpo = text.splitlines()
    assert "0 of 64 sampled training rollouts" in ppo and "0.000 at every point" in ppo
    assert "3 of 64" in dgpo and "0.080 at step 0, best 0.080 at step 0, last 0.030" in dgpo
    assert all("the model RL started from" in line for line in (ppo, dgpo))
    val["dgpo"][1]["val_em"] = 0.09
    assert "the model RL started from" not in rl_reading(curves, val).splitlines()[1]


def test_rl_reading_flags_runs_of_one_start_whose_step_0_differs():
    """DGPO and its GRPO ablation both start from the KD student; different step-0 validation means different
    weights (two trainings of it), which the reading says; the same step 0 says nothing."""
    from dgpo_lib.book.readings import start_reading
    val = {"dgpo": [{"step": 0, "val_em": 0.08, "val_searches": 0.98}],
           "dgpo_grpo": [{"step": 0, "val_em": 0.01, "val_searches": 1.92}],
           "ppo": [{"step": 0, "val_em": 0.0, "val_searches": 0.0}],
           "dgpo_no_coldstart": [{"step": 0, "val_em": 0.0, "val_searches": 0.0}]}
    (line,) = start_reading(val)
    assert line.startswith("- **Not the same start:** DGPO and DGPO with GRPO")
    assert "both start from the KD cold start" in line
    assert "EM 0.080, 0.98 searches" in line and "EM 0.010, 1.92 searches" in line
    val["dgpo_grpo"][0].update(val_em=0.08, val_searches=0.98)
    assert start_reading(val) == []
    from dgpo_lib.book.readings import rl_reading  # GKD ablations have validation rows but no RL variant: left out
    curves = {k: [{"em": 0.0, "rollouts": 32.0, "kl_teacher": 1.0}] for k in ("dgpo", "dgpo_grpo")}
    val["dgpo_grpo"][0]["val_em"] = 0.01
    val["gkd_onpolicy"] = [{"step": 0, "val_em": 0.0}]
    assert "Not the same start" in rl_reading(curves, val).splitlines()[-1]


def test_performance_reading_bounds_mfu_by_the_profiled_matmul_share():
    """Training MFU is read against the profiled share of matrix multiplications (the TRL peer left out), and a
    rollout's outside-forward share is given to one decimal, so 10.5% does not read as meeting "under 10%"."""
    from dgpo_lib.book.readings import performance_reading

    bench = {"training": {"gemm_bf16_flops": 4e11, "rows": [{"step": "KD (full)", "mfu": 0.35},
                                                           {"step": "SeqKD (full)", "mfu": 0.30},
                                                           {"step": "TRL SFTTrainer (full)", "mfu": 0.12}]},
             "profile": {"kd_steps": {"outside_operators_share": 0.08, "operators": [
                 {"operator": "aten::mm", "share_of_wall": 0.45}, {"operator": "aten::bmm", "share_of_wall": 0.05},
                 {"operator": "aten::_scaled_dot_product_flash_attention_for_cpu", "share_of_wall": 0.2}]}},
             "rollout": {"rows": [{"model": "student", "generator": "continuous", "batch": 32,
                                   "outside_forward_share": 0.105, "prefill_share_of_gemm": 0.41},
                                  {"model": "student", "generator": "hf", "batch": 32}]}}
    text = performance_reading(bench)
    assert "30%-35% of the bf16 GEMM rate" in text and "(400 GFLOP/s)" in text and "2 of 2 steps" in text
    assert "matrix multiplications take 50%" in text and "attention 20%" in text and "remaining 30%" in text
    assert "10.5% of their time" in text and "41% of the GEMM rate" in text
    assert text.count("rollouts") == 1
    assert performance_reading({}).startswith("No training")


def test_flops_per_token_counts_each_pass_of_a_step():
    """2 FLOPs per weight forward, 4 more backward: KD = student fwd+bwd + teacher fwd; the DGPO update adds the
    old log-prob and old value forwards and the critic's forward and backward."""
    from dgpo_lib.train.flops import flops_per_token
    ws, wt = 10, 100
    assert flops_per_token("KD (full)", ws, wt) == 6 * 10 + 2 * 100
    assert flops_per_token("DGPO update (full)", ws, wt) == (2 + 2 + 6 + 6) * 10 + 2 * 100
    assert flops_per_token("Teacher SFT (full)", ws, wt) == 600 and flops_per_token("KD (LoRA)", ws, wt) is None


def test_rl_update_reading_compares_arithmetic_and_efficiency_with_kd():
    """At the cpu preset's sizes (53M and 106M linear weights) the update computes 2.0x KD's FLOPs per token; the
    reading gives that beside both steps' tokens/s and MFU."""
    from dgpo_lib.book.readings import performance_reading, rl_update_reading
    tr = {"gemm_bf16_flops": 4e11, "linear_weights": {"student": 53_000_000, "teacher": 106_000_000},
          "rows": [{"step": "KD (full)", "tokens_per_s": 260.0, "mfu": 0.35},
                   {"step": "DGPO update (full)", "tokens_per_s": 120.0, "mfu": 0.32}]}
    text = rl_update_reading(tr)
    assert "120 tokens/s against a KD step's 260" in text and "2.2x fewer" in text
    assert "computes 2.0x a KD step's linear-layer FLOPs" in text and "32% of the GEMM rate against KD's 35%" in text
    assert text in performance_reading({"training": tr})
    assert rl_update_reading({"rows": tr["rows"]}) == "" and rl_update_reading(None) == ""


def _last(em, hit, searches):
    return {"step": 10, "val_em": em, "val_hit_ratio": hit, "val_searches": searches, "val_answered": 1.0}


def test_finding_vs_reading_compares_each_run_and_names_runs_that_never_search():
    from dgpo_lib.book.readings import finding_vs_reading, val_reading
    # the committed run's case: 0-40% found, EM 0.000-0.080, where the 0% runs never searched
    text = finding_vs_reading({"kd": _last(0.08, 0.40, 1.2), "seqkd": _last(0.02, 0.30, 1.0),
                               "gkd": _last(0.0, 0.0, 0.0)})
    assert "about as often" not in text
    assert "held a gold answer in 30%-40%" in text and "EM was 0.020-0.080" in text
    assert "each finds the answer at least twice as often as it writes it out" in text
    assert "GKD never searched" in text
    # a run that reads out most of what it finds, beside one that does not
    text = finding_vs_reading({"kd": _last(0.30, 0.35, 1.0), "seqkd": _last(0.02, 0.30, 1.0)})
    assert "SeqKD finds it at least twice as often as it writes it out" in text and "never searched" not in text
    assert finding_vs_reading({"kd": _last(0.30, 0.35, 1.0)}).endswith("each reads out more than half of what it finds.")
    assert finding_vs_reading({"gkd": _last(0.0, 0.0, 0.0)}) == ("- **Finding vs reading**: no run searched at its last "
                                                                 "validation point. GKD never searched, so had nothing "
                                                                 "retrieved to read.")
    assert finding_vs_reading({"kd": {"step": 1, "val_em": 0.1}}) is None  # records without a hit ratio
    assert "Finding vs reading" in val_reading({"kd": [_last(0.08, 0.40, 1.2)]})

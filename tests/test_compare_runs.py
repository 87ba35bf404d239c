"""benchmarks/compare_runs.py: two runs' training logs compared value for value, and how far apart they are."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from compare_runs import compare_stage  # noqa: E402


def _write(folder: Path, name: str, rows: list[dict]):
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_training_logs_equal_up_to_timings(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, "metrics.jsonl", [{"step": 1, "loss": 2.0, "step_s": 3.0}, {"step": 2, "loss": 1.0, "step_s": 3.0}])
    _write(b, "metrics.jsonl", [{"step": 1, "loss": 2.0, "step_s": 9.0}, {"step": 2, "loss": 1.0, "step_s": 1.0}])
    c = compare_stage(a, b)
    assert (c["equal"], c["of"], c["loss_max_abs_diff"]) == (2, 2, 0.0)


def test_close_runs_report_the_largest_loss_gap_and_last_common_validation(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, "sft/metrics.jsonl", [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}])
    _write(b, "sft/metrics.jsonl", [{"step": 1, "loss": 2.25}, {"step": 2, "loss": 0.5}])
    _write(a, "sft/val_metrics.jsonl", [{"step": 0, "val_em": 0.0}, {"step": 2, "val_em": 0.3}])
    _write(b, "sft/val_metrics.jsonl", [{"step": 0, "val_em": 0.0}, {"step": 2, "val_em": 0.25}])
    c = compare_stage(a, b)
    assert (c["equal"], c["of"], c["loss_max_abs_diff"]) == (0, 2, 0.5)
    assert (c["val_step"], c["val_em_a"], c["val_em_b"]) == (2, 0.3, 0.25)


def test_teacher_trajectories_report_each_runs_em(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, "all_records.jsonl", [{"id": "q1", "em": 1.0}, {"id": "q2", "em": 0.0}])
    _write(b, "all_records.jsonl", [{"id": "q1", "em": 1.0}, {"id": "q2", "em": 1.0}])
    for folder, em in ((a, 0.5), (b, 1.0)):  # the tgo stage's record summarises its rollouts
        (folder / "done.json").write_text(json.dumps({"all": {"n": 2, "em": em}}))
    c = compare_stage(a, b)
    assert (c["what"], c["equal"], c["of"], c["em_a"], c["em_b"]) == ("teacher trajectories", 1, 2, 0.5, 1.0)


def test_eval_records_report_the_table_average_and_the_paired_interval(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    rec = lambda ds, i, em, n: {"dataset": ds, "id": f"q{i}", "em": em, "n_searches": n}  # noqa: E731
    _write(a, "records_nq.jsonl", [rec("nq", 1, 1.0, 1), rec("nq", 2, 0.0, 1)])
    _write(a, "records_popqa.jsonl", [rec("popqa", 3, 0.0, 1)])
    _write(b, "records_nq.jsonl", [rec("nq", 1, 1.0, 2), rec("nq", 2, 1.0, 2)])
    _write(b, "records_popqa.jsonl", [rec("popqa", 3, 0.0, 1)])
    for folder, nq_em, nq_searches in ((a, 0.5, 1.0), (b, 1.0, 2.0)):  # as evaluate.evaluate summarises them
        per_set = {"nq": {"em": nq_em, "searches": nq_searches}, "popqa": {"em": 0.0, "searches": 1.0}}
        (folder / "summary.json").write_text(json.dumps({"per_set": per_set, "avg_em": nq_em / 2}))
    c = compare_stage(a, b)
    assert (c["equal"], c["of"], c["em_a"], c["em_b"]) == (1, 3, 0.25, 0.5)  # means of per-benchmark means
    assert c["em_b_minus_a"] == 0.25 and 0.0 <= c["ci95_lo"] <= c["ci95_hi"] <= 0.5
    assert (c["searches_a"], c["searches_b"]) == (1.0, 1.5)

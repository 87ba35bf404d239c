"""benchmarks/cost_table.py: an earlier committed run's stage records read from git, the machine each run had, and
the chapter's before/after table."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from cost_table import git_records, machine_of  # noqa: E402


def test_committed_records_are_read_from_git_and_an_older_record_says_bf16_through_its_dtype():
    import subprocess

    from dgpo_lib.data.loaders import REPO_ROOT
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    records, config = git_records(head, "results/cpu")
    assert "teacher" in records and records["teacher"]["stage"] == "teacher" and config["preset"] == "cpu"
    old = {"s": {"created": "1", "machine": {"cpus": 2}}}
    assert machine_of(old, {"models": {"compute_dtype": "bfloat16"}}) == "2 CPU cores, bfloat16 in hardware"
    assert machine_of(old, {}) == "2 CPU cores" and machine_of({}, {}) == "no finished stage"


def test_the_chapter_table_marks_projected_rows_and_names_both_machines(tmp_path):
    from dgpo_lib.book.benchmarks import cost_table

    rows = [{"stage": "teacher", "kind": "training", "before_min": 90.0, "after_min": 180.0, "projected": False,
             "before_peak_gib": 15.5, "after_peak_gib": 8.6, "estimate_gib": 8.1, "estimate_over_measured": 0.94},
            {"stage": "kd_kd", "kind": "training", "before_min": 30.0, "after_min": 60.0, "projected": True,
             "before_peak_gib": 9.3, "after_peak_gib": None, "estimate_gib": 7.8, "estimate_over_measured": None}]
    (tmp_path / "cost_table_x.json").write_text(json.dumps({
        "rows": rows, "totals_min": {"table": {"before": 120.0, "after": 240.0}, "all": {"before": 120, "after": 240}},
        "before": {"commit": "abc", "machine": "2 CPU cores, bfloat16 in hardware"},
        "after": {"machine": "2 CPU cores, AMD EPYC, no bfloat16 hardware", "finished": 1, "stages": 2},
        "budget_min": 480}))
    df, caption = cost_table("x", tmp_path)
    assert list(df["after, min"]) == ["180.0", "60.0 (projected)"]
    assert "commit abc: 2 CPU cores, bfloat16 in hardware" in caption and "1 of 2 stages finished" in caption
    assert "120 min before, 240 after, against a budget of 480 min" in caption
    assert cost_table("none", tmp_path) is None

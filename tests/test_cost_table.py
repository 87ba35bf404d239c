"""benchmarks/cost_table.py: an earlier committed run's stage records read from git, the machine each run had, and
the chapter's before/after table."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from cost_table import cost_rows, git_records, machine_of  # noqa: E402


def test_committed_records_are_read_from_git_and_an_older_record_says_bf16_through_its_dtype():
    import subprocess

    from dgpo_lib.data.loaders import REPO_ROOT
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    if not head:
        pytest.skip("not a git checkout")
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
             "before_peak_gib": 9.3, "after_peak_gib": None, "estimate_gib": 7.8, "estimate_over_measured": None},
            {"stage": "kd_taid", "kind": "training", "before_min": None, "after_min": None, "projected": False,
             "before_peak_gib": None, "after_peak_gib": None, "estimate_gib": 7.8, "estimate_over_measured": None}]
    (tmp_path / "cost_table_x.json").write_text(json.dumps({
        "rows": rows, "totals_min": {"table": {"before": 120.0, "after": 240.0, "unpriced": 1}, "all": {"before": 120, "after": 240}},
        "before": {"commit": "abc", "machine": "2 CPU cores, bfloat16 in hardware"},
        "after": {"machine": "2 CPU cores, AMD EPYC, no bfloat16 hardware", "finished": 1, "stages": 3},
        "budget_min": 480}))
    df, caption = cost_table("x", tmp_path)
    assert list(df["after, min"]) == ["180.0", "60.0 (projected)", ""]  # not priced: empty, never "nan"
    assert list(df["before, peak GiB"]) == [15.5, 9.3, ""]
    assert "commit abc: 2 CPU cores, bfloat16 in hardware" in caption and "1 of 3 stages finished" in caption
    assert "120 min before, 240 after (1 of them not priced), against a budget of 480 min" in caption
    assert cost_table("none", tmp_path) is None


def test_unfinished_stages_are_projected_by_their_kind_and_unpriced_ones_are_counted():
    rec = lambda minutes, peak=None: {"wall_s": minutes * 60.0, "peak_rss_gib": peak}  # noqa: E731
    old = {"teacher": rec(90, 15.5), "kd_kd": rec(30), "kd_gkd": rec(60), "eval_kd": rec(10)}
    new = {"teacher": rec(180, 8.0)}
    est = {"teacher sft": 8.8 * 2 ** 30, "kd": 7.0 * 2 ** 30}
    names = ["teacher", "kd_kd", "kd_gkd_sft", "kd_taid", "eval_kd", "kd_then"]
    rows, ratio, totals = cost_rows(names, old, new, {"kd_gkd_sft": "kd_gkd"}, est, {"kd_then"})
    by = {r["stage"]: r for r in rows}
    assert ratio == {"training": 2.0, "evaluation": None}
    assert by["teacher"]["after_min"] == 180.0 and not by["teacher"]["projected"]
    assert by["teacher"]["estimate_over_measured"] == 1.1 and by["kd_kd"]["estimate_gib"] == 7.0
    assert (by["kd_kd"]["after_min"], by["kd_kd"]["projected"]) == (60.0, True)
    assert (by["kd_gkd_sft"]["before_stage"], by["kd_gkd_sft"]["after_min"]) == ("kd_gkd", 120.0)
    assert by["kd_taid"]["after_min"] is None and not by["kd_taid"]["projected"]  # no earlier cost: not priced
    assert by["eval_kd"]["after_min"] is None and not by["eval_kd"]["projected"]  # no finished evaluation yet
    assert totals["table"] == {"before": 190.0, "after": 360.0, "unpriced": 2}
    assert totals["all"]["unpriced"] == 3

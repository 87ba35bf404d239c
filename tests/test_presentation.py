"""What the reader and the user see: book tables (no unnamed index, nothing truncated, wide tables turned upright)
and the main job's terminal (a chapter's stage logs and progress bars followed from its log file)."""
import io

import pandas as pd

from dgpo_lib.book.job_log import LogFollower
from dgpo_lib.book.display import facts, table, upright


def test_table_names_the_row_labels_formats_floats_and_truncates_nothing():
    long = "a claim whose text runs well past fifty characters, which pandas would cut with an ellipsis"
    df = pd.DataFrame({"EM": [0.12345, 0.5]}, index=pd.Index(["KD", long], name="method"))
    html = table(df, "Caption.").to_html()
    assert "method" in html and long in html and "0.123" in html and "0.12345" not in html
    assert "Caption." in html and "…" not in html and "..." not in html
    # a {row: {column: value}} dict: rows become the first column, named by `index`
    html = table({"ppo": {"em": 0.25}, "dgpo": {"em": 0.5}}, index="run").to_html()
    assert "run" in html and "dgpo" in html and "0.500" in html
    assert "1,234" in facts({"parameters": 1234}).to_html()


def test_upright_turns_a_wide_short_table():
    df = pd.DataFrame([{"model": "student", "batch": 32, **{f"q{i}": i for i in range(10)}},
                       {"model": "teacher", "batch": 1, **{f"q{i}": 2 * i for i in range(10)}}])
    up = upright(df)
    assert list(up.columns) == ["student 32", "teacher 1"] and up.loc["q3"].tolist() == [3, 6]
    narrow = df[["model", "q1"]]
    assert upright(narrow) is narrow


def test_log_follower_prints_lines_and_redraws_bars_at_most_once_a_minute(tmp_path):
    log = tmp_path / "main.log"
    log.write_text("written before the job started\n")
    out = io.StringIO()  # not a terminal: bars are printed as lines, at most one per `bar_every_s`
    f = LogFollower(log, out=out, bar_every_s=60)
    with open(log, "a") as w:
        w.write("2026-01-01 teacher: running\n")
        w.write("rollouts:  10%|#  | 1/10\rrollouts:  20%|## | 2/10")
    f.poll()
    with open(log, "a") as w:
        w.write("\rrollouts:  30%|###| 3/10")
    f.poll()  # within the minute: not printed again
    with open(log, "a") as w:
        w.write("\rrollouts: 100%|###| 10/10\n2026-01-01 teacher: done\n")
    f.poll()
    lines = out.getvalue().splitlines()
    assert lines == ["  2026-01-01 teacher: running", "  rollouts:  20%|## | 2/10", "  rollouts: 100%|###| 10/10",
                     "  2026-01-01 teacher: done"]


def test_log_follower_strips_colour_codes_off_a_terminal_and_prints_the_stage_heartbeat(tmp_path):
    log = tmp_path / "main.log"
    log.write_text("")
    notes = iter([None, "-- 3 of 31 stages finished; about 2.0 h of stage work left at the reference run's costs"])
    out = io.StringIO()
    f = LogFollower(log, out=out, status=lambda: next(notes, None))
    with open(log, "a") as w:
        w.write("\x1b[0;31mValueError\x1b[0m: boom\n")
    f.poll()
    f.poll()
    assert out.getvalue().splitlines() == ["  ValueError: boom", "  -- 3 of 31 stages finished; about 2.0 h of stage "
                                           "work left at the reference run's costs"]


def test_stage_watch_speaks_only_when_a_stage_finishes():
    from dgpo_lib.book.reproduce import StageWatch

    class FakeRun:
        done = {"a"}

        def stage_names(self):
            return ["a", "b", "c"]

        def is_done(self, s):
            return s in self.done

    run = FakeRun()
    w = StageWatch(run, {"a": 60.0, "b": 7200.0, "c": 600.0}, every_s=0)
    assert w() is None  # nothing new since it started
    run.done = {"a", "b"}
    assert w() == "-- 2 of 3 stages finished; about 10 min of stage work left at the reference run's costs"
    assert w() is None


def test_table_shows_counts_as_counts():
    html = table({"all": {"n": 1600, "em": 0.44625}, "kept": {"n": 714, "em": 1.0}}, index="trajectories").to_html()
    assert "1,600" in html and "1600.000" not in html and "0.446" in html and "1.000" in html
    assert "0.000" in table(pd.DataFrame({"EM": [0.0, 1.0]}, index=["a", "b"])).to_html()  # scores stay scores


def test_reading_frame_splits_episodes_by_whether_the_answer_was_retrieved():
    import pandas as pd
    from dgpo_lib.book.behaviour import reading_frame
    beh = pd.DataFrame({"method": ["KD"] * 4 + ["Teacher"] * 2, "hit": [True, True, False, False, True, True],
                        "em": [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]})
    r = reading_frame(beh)
    assert r.loc["KD"].tolist() == [4, 0.5, 0.5, 0.5]
    assert r.loc["Teacher", "EM when retrieved"] == 1.0 and pd.isna(r.loc["Teacher", "EM when not retrieved"])


def test_benchmark_tables_reads_every_committed_result_and_skips_counts(tmp_path):
    """A script may write `rows` as a count (sampling.py) with its table under `results`; every committed JSON in
    benchmarks/results must read as a table, since chapter 09 shows them all."""
    import json

    from dgpo_lib.data.loaders import REPO_ROOT
    from dgpo_lib.book.benchmarks import benchmark_tables

    (tmp_path / "a.json").write_text(json.dumps({"rows": 32, "results": [{"sampler": "x", "ms": 1.0}]}))
    (tmp_path / "b.json").write_text(json.dumps({"rows": 32}))
    got = benchmark_tables(tmp_path)
    assert list(got) == ["a"] and list(got["a"][0].columns) == ["sampler", "ms"]
    committed = benchmark_tables(REPO_ROOT / "benchmarks" / "results")
    assert "sampling_cpu" in committed and "rollout_cpu" in committed


def test_profile_tables_show_the_rl_step_by_phase_with_the_uncovered_time_as_a_row(tmp_path):
    import json

    from dgpo_lib.book.benchmarks import profile_tables

    ops = {"wall_s": 10.0, "outside_operators_share": 0.2,
           "operators": [{"operator": "aten::mm", "calls": 3, "self_s": 4.0, "share_of_wall": 0.4}]}
    rl = {**ops, "step_s": 8.0, "rollouts": 4, "sequence_tokens": 1200,
          "phases": [{"phase": "rollout", "s": 5.0, "share_of_step": 0.625},
                     {"phase": "actor_update", "s": 2.0, "share_of_step": 0.25}]}
    (tmp_path / "profile_x.json").write_text(json.dumps({"kd_steps": ops, "rl_step": rl}))
    got = profile_tables("x", tmp_path)
    assert len(got) == 3 and "DGPO step" in got[1][1] and "by phase" in got[2][1]
    phases = got[2][0]
    assert list(phases["phase"])[:2] == ["rollout", "actor_update"]
    assert phases["s"].iloc[-1] == 1.0 and phases["share_of_step"].sum() == 1.0


def test_rl_step_profile_reads_the_phase_shares_and_the_update_rate_from_the_json(tmp_path):
    import json

    from dgpo_lib.book.benchmarks import rl_step_profile

    rl = {"wall_s": 10.0, "outside_operators_share": 0.1, "step_s": 10.0, "rollouts": 4, "sequence_tokens": 800,
          "response_tokens_per_rollout": 50,
          "operators": [{"operator": "aten::mm", "calls": 3, "self_s": 6.0, "share_of_wall": 0.6}],
          "phases": [{"phase": "rollout", "s": 2.0, "share_of_step": 0.2},
                     {"phase": "reference_logprobs", "s": 3.0, "share_of_step": 0.3},
                     {"phase": "actor_update", "s": 5.0, "share_of_step": 0.5}]}
    (tmp_path / "profile_cpu.json").write_text(json.dumps({"rl_step": rl, "threads": 2}))
    tables, reading = rl_step_profile(tmp_path)
    assert [len(df) for df, _ in tables] == [4, 1] and "4 rollouts of 800 tokens" in tables[0][1]
    assert "rollout takes 20%" in reading and "score it take 30%" in reading and "actor's update 50%" in reading
    assert "100 tokens/s" in reading and "Matrix multiplications take 60%" in reading  # 800 tokens / (10 - 2) s
    assert rl_step_profile(tmp_path / "none") == ([], "")


def test_results_files_name_the_machine_and_whether_it_has_bfloat16_hardware():
    from dgpo_lib.book.benchmarks import machine_words
    from dgpo_lib.io_utils import provenance

    m = provenance()["machine"]
    assert m["cpus"] >= 1 and isinstance(m["cpu_native_bf16"], bool) and "cpu_model" in m and "gpu" in m
    assert machine_words({"cpus": 2, "cpu_model": "AMD EPYC", "cpu_native_bf16": False, "gpu": None}) == \
        "2 CPU cores, AMD EPYC, no bfloat16 hardware"
    assert machine_words({"cpus": 2}) == "2 CPU cores"  # files written before the model was recorded


def test_remaining_estimate_prices_unfinished_stages_and_chapters_at_the_reference_costs():
    from dgpo_lib.book.reproduce import remaining_estimate

    class FakeRun:
        def stage_names(self):
            return ["student", "teacher", "kd_kd", "rl_new"]

        def is_done(self, name):
            return name == "student"

    cost = {"student": 3000.0, "teacher": 5400.0, "kd_kd": 1800.0}
    got = remaining_estimate(FakeRun(), cost, {"04_kd": 60.0, "05_ppo_dgpo": 60.0})
    assert got == ("; about 2.0 h of work left at the reference run's costs (2 stages to run and 1 it has no cost "
                   "for, 2 chapters)")  # teacher + kd_kd + two chapters = 7,320 s
    assert remaining_estimate(FakeRun(), {}, {}) == ""


def test_consecutive_prints_become_one_stream_output_however_they_were_flushed():
    """The kernel sends two prints as one stream message or as two, by timing: the kept chapter is the same."""
    from dgpo_lib.book.reproduce import merged_streams

    one = [{"output_type": "stream", "name": "stdout", "text": ["Q: x\n", "\n", "<information>"]}]
    two = [{"output_type": "stream", "name": "stdout", "text": ["Q: x\n"]},
           {"output_type": "stream", "name": "stdout", "text": "\n<information>"}]
    assert merged_streams(one) == merged_streams(two) == [
        {"output_type": "stream", "name": "stdout", "text": ["Q: x\n", "\n", "<information>"]}]
    mixed = [*two, {"output_type": "stream", "name": "stderr", "text": "warn\n"},
             {"output_type": "display_data", "data": {}}, {"output_type": "stream", "name": "stdout", "text": "y"}]
    assert [o.get("name") for o in merged_streams(mixed)] == ["stdout", "stderr", None, "stdout"]


def test_observation_reading_quotes_the_row_of_the_preset_budget_and_is_silent_without_one():
    from dgpo_lib.book.readings import observation_reading

    bench = {"searches": 2317, "answer_in_three_passages": 0.36, "full_block_tokens": 309.7,
             "rows": [{"max_obs_tokens": 160, "share_of_retrieved_answers": 0.8525, "mean_block_tokens": 158.1},
                      {"max_obs_tokens": 500, "share_of_retrieved_answers": 1.0, "mean_block_tokens": 307.6}]}
    text = observation_reading(bench, 160)
    assert "2,317 evaluation searches" in text and "36% of them" in text and "shows 85% of those answers" in text
    assert "158 tokens a block against 310 uncut" in text
    assert observation_reading(bench, 320) == "" and observation_reading(None, 160) == ""
    assert "validation" not in text  # no --model half
    bench["validation"] = [{"max_obs_tokens": 160, "questions": 200, "val_em": 0.245, "val_s": 271.8},
                           {"max_obs_tokens": 320, "questions": 200, "val_em": 0.27, "val_s": 400.8}]
    assert observation_reading(bench, 160).endswith(
        "On 200 validation questions the teacher trained at 160 tokens scores 0.245 at 160 tokens, "
        "0.270 at 320 tokens (1.5x the time).")


def test_settings_frame_states_each_preset_s_models_budgets_and_observation_cut():
    from dgpo_lib.book.tables import settings_frame
    from dgpo_lib.config import load_config

    cpu, paper = settings_frame(load_config("cpu")), settings_frame(load_config("paper"))
    assert list(cpu.columns) == ["value", "config key"] and "KD" in cpu.index and "RL" in cpu.index
    assert "15 layers (greedy), healed 600 steps" in cpu.loc["student", "value"]
    assert "cut at 160 tokens" in cpu.loc["protocol", "value"] and "cut at 500 tokens" in paper.loc["protocol", "value"]
    assert "200 of them held out" in cpu.loc["training questions", "value"]
    assert "held out" not in paper.loc["training questions", "value"]  # the paper preset has no validation slice
    assert "1000 steps of 512 prompts" in paper.loc["RL", "value"]

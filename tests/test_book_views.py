"""What the chapters compute to show: the checkpoint an RL row is, run-to-run spread, figure layout and colours,
the pipeline diagram, guided experiments' commands and costs, and an episode replayed with its action mask."""
import json

import pytest

from dgpo_lib.book import selection


class FakeRun:
    """The two things the book's helpers read of a run: stage logs and stage records."""

    def __init__(self, val=None, records=None, ablations=()):
        self.val, self.records = val or {}, records or {}
        self.cfg = type("Cfg", (), {"eval": type("Eval", (), {"methods": ["dgpo"], "ablations": list(ablations)})})

    def metrics(self, stage, file="metrics.jsonl"):
        return self.val.get(stage, []) if file == "val_metrics.jsonl" else []

    def stage_records(self):
        return self.records


def _curve(ems):
    return [{"step": 5 * i, "val_em": e} for i, e in enumerate(ems)]


def test_the_selected_step_is_the_earliest_best_and_step_0_is_the_cold_start():
    run = FakeRun({"rl_dgpo": _curve([0.08, 0.05, 0.08]), "rl_ppo": _curve([0.0, 0.02, 0.03])})
    steps = selection.selected_steps(run, ["teacher", "kd", "ppo", "dgpo", "dgpo@final"])
    assert steps == {"ppo": 10, "dgpo": 0}  # not KD rows, not a row pinned to its last step
    assert selection.cold_start_rows(steps) == ["dgpo"]
    labels = selection.relabel_cold_starts(["PPO", "DGPO"], ["ppo", "dgpo"], ["dgpo"])
    assert labels == ["PPO", "DGPO (= its KD start: step 0 selected)"]


def test_retrained_evaluations_and_the_spread_sentence(tmp_path):
    from dgpo_lib.book.variation import retrained_evaluations, spread_reading

    stages = [{"stage": "eval_kd", "what": "eval records", "equal": 11, "of": 1325, "em_a": 0.017, "em_b": 0.011,
               "em_b_minus_a": -0.006, "ci95_lo": -0.013, "ci95_hi": 0.002, "ran_again": True},
              {"stage": "eval_ppo", "what": "eval records", "equal": 1325, "of": 1325, "em_a": 0.0, "em_b": 0.0,
               "em_b_minus_a": 0.0, "ci95_lo": 0.0, "ci95_hi": 0.0, "ran_again": False},
              {"stage": "kd_kd", "what": "training metrics", "ran_again": True}]
    (tmp_path / "compare_runs_cpu.json").write_text(json.dumps({"stages": stages}))
    df = retrained_evaluations("cpu", tmp_path)
    assert df.to_dict("records") == [{"row": "KD", "first training": 0.017, "second training": 0.011,
                                      "difference [95% CI]": "-0.006 [-0.013, +0.002]",
                                      "same answers": "11 of 1,325"}]
    res = {"avg_em": {"kd": 0.017, "seqkd": 0.021, "gkd": 0.0}}
    text = spread_reading(df, res, ["kd", "seqkd", "gkd"])
    assert "KD moved from 0.017 to 0.011" in text and "span 0.000-0.021" in text and "smaller than 0.006" in text
    assert retrained_evaluations("smoke", tmp_path).empty and spread_reading(df.iloc[0:0], res, ["kd"]) == ""


def test_curves_two_panels_a_row_one_legend_and_a_colour_per_method():
    import matplotlib
    matplotlib.use("Agg")
    from dgpo_lib.book.figures import plot_curves, run_colours

    curves = {"kd": [{"step": s, "a": s, "b": 1, "c": 2} for s in range(1, 6)],
              "dgpo": [{"step": s, "a": -s, "b": 0, "c": 1} for s in range(1, 4)]}
    fig = plot_curves(curves, ["a", "b", "c"], {"a": "A"})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(fig.axes) == 4 and len(visible) == 3  # a 2 x 2 grid, the fourth cell empty
    assert visible[0].get_xlim() == (1, 5)  # the axis ends where the data end
    assert len(fig.legends) == 1 and not any(ax.get_legend() for ax in fig.axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["KD", "DGPO"]
    assert run_colours(["kd", "dgpo"])["kd"] == run_colours(["dgpo", "x", "kd"])["kd"]  # same colour everywhere
    assert len(set(run_colours(["kd", "seqkd", "ppo", "dgpo", "dgpo_grpo", "gkd_onpolicy"]).values())) == 6


def test_pipeline_diagram_is_byte_stable(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from dgpo_lib.book.diagrams import PIPELINE, pipeline_diagram, save

    save(pipeline_diagram(), tmp_path / "a.svg")
    save(pipeline_diagram(), tmp_path / "b.svg")
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()
    from dgpo_lib.pipeline.stages import STAGES
    assert all(stage.partition("_")[0] in STAGES or stage in STAGES for stage, *_ in PIPELINE)


def test_try_it_gives_the_command_and_prices_it_from_the_run():
    from dgpo_lib.book.experiments import try_it

    run = FakeRun(records={"rl_dgpo": {"wall_s": 1800.0}, "eval_dgpo": {"wall_s": 600.0, "paused_s": 0}})
    text = try_it(run, "cpu", [("Beta", "b", "06", '"eval.ablations=[dgpo_beta_0.01]"', ["rl_dgpo", "eval_dgpo"]),
                               ("Other", "o", "06", "x=1", ["rl_missing"])])
    assert ("python -m dgpo_lib.book.reproduce --preset cpu --only 06 --out runs/try-b "
            '"eval.ablations=[dgpo_beta_0.01]"') in text
    assert "about 40 min here (as long as `rl_dgpo` and `eval_dgpo` took in this run)" in text and "as long as one run of rl_missing" in text
    shown = FakeRun(ablations=["dgpo_beta_0.01"])  # a variant the run already shows is not offered again
    assert "try-b" not in try_it(shown, "cpu", [("Beta", "b", "06", '"eval.ablations=[dgpo_beta_0.01]"', ["rl_dgpo"])])


def test_a_recorded_episode_replays_token_for_token(tiny, dense, scripted, corpus):
    """An episode run with a scripted model, written as a record, then replayed from the record alone: the same
    response ids and the same action mask, without the model."""
    from dgpo_lib.book.trajectory_view import first_searching_record, mask_counts, masked_html
    from dgpo_lib.data.loaders import QAExample
    from dgpo_lib.env.replay import replay
    from dgpo_lib.env.rollout import RolloutSettings, SearchEnv

    _, tok = tiny
    q = QAExample("7", "question about towers", ["Paris"], "test")
    settings = RolloutSettings(max_turns=3, max_turn_tokens=64, max_obs_tokens=40, max_total_tokens=4000, topk=3)
    gen = scripted(tok, {q.question: ["<think>look</think> <search> Eiffel Tower </search>", "no action here",
                                      "<answer> Paris </answer>"]})
    (tr,) = SearchEnv(gen, dense, tok, settings).run([q])
    record = tr.to_record()
    assert first_searching_record([{"n_searches": 0, "em": 1}, record]) is record
    again = replay(record, {p.id: p for p in corpus}, tok, settings)
    assert again.response_ids == tr.response_ids and again.action_mask == tr.action_mask
    counts = mask_counts(again)
    assert counts["mask 1 (trained on)"] == counts["model"] == sum(tr.action_mask)
    assert counts["information"] > 0 and counts["invalid"] > 0  # the retrieved block and the corrective message
    html = masked_html(again)
    assert html.count('mask 1"') == sum(s.kind == "model" for s in tr.segments) and "&lt;information&gt;" in html
    with pytest.raises(ValueError, match="left its record"):  # other settings write other text: named, not drawn
        replay(record, {p.id: p for p in corpus}, tok, RolloutSettings(**{**settings.__dict__, "max_obs_tokens": 10}))


@pytest.mark.parametrize("mode", ["block", "closed"])
def test_the_observation_view_splits_the_block_where_the_rollout_cuts_it(tiny, corpus, mode):
    """What chapter 01 shows as the model's view is the rollout's own cut: the shown text is the start of the
    block, shown + hidden is the whole block, and a block under the budget hides nothing."""
    from dgpo_lib.book.trajectory_view import observation_html, observation_split
    from dgpo_lib.env.prompts import information_block

    _, tok = tiny
    docs = corpus[:3]
    whole = information_block(docs)
    shown, hidden, closed = observation_split(docs, tok, 30, mode)
    assert shown + hidden == whole and hidden and closed == (mode == "closed")
    assert len(tok(shown, add_special_tokens=False).input_ids) <= 30
    assert observation_split(docs, tok, 10 ** 6, mode) == (whole, "", False)
    word = docs[0].text.split()[0]
    page = observation_html(docs, tok, 30, mode, answers=[word])
    assert f"<mark>{word}</mark>" in page.replace(f"<mark>{word.lower()}</mark>", f"<mark>{word}</mark>")
    assert "cut off, never seen" in page and "line-through" in page

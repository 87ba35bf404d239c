"""The paired bootstrap behind the claims table, and the verdicts it gives."""
import numpy as np
import pytest

from dgpo_lib.book.claims import claims_frame, targets_frame
from dgpo_lib.evaluation.stats import paired_bootstrap, verdict


def set_average(per_question):
    """Mean over benchmarks of the per-benchmark mean: avg_em as dgpo_lib/evaluation/evaluate.py defines it."""
    return float(np.mean([np.mean(v) for v in per_question.values()]))


def test_set_average_is_mean_of_benchmark_means():
    # (1/2 + 1/4) / 2, not the pooled 2/6
    assert set_average({"a": [1, 0], "b": [1, 0, 0, 0]}) == pytest.approx(0.375)


def test_identical_rows_give_a_zero_interval():
    a = {"x": [1, 0, 1, 0, 0], "y": [0, 0, 1]}
    b = paired_bootstrap(a, a, n_boot=200)
    assert (b["diff"], b["lo"], b["hi"]) == (0.0, 0.0, 0.0)


def test_constant_gap_has_no_spread():
    b = paired_bootstrap({"x": [1] * 10}, {"x": [0] * 10}, n_boot=200)
    assert (b["diff"], b["lo"], b["hi"]) == (1.0, 1.0, 1.0)


def test_point_estimate_is_the_difference_of_set_averages_and_inside_the_interval():
    rng = np.random.default_rng(1)
    a = {s: rng.integers(0, 2, n).tolist() for s, n in [("x", 50), ("y", 80)]}
    b = {s: rng.integers(0, 2, len(v)).tolist() for s, v in a.items()}
    r = paired_bootstrap(a, b, n_boot=2000)
    assert r["diff"] == pytest.approx(set_average(a) - set_average(b))
    assert r["lo"] < r["diff"] < r["hi"]


def test_weight_tests_a_ratio():
    # a = 0.5, b = 0.5: a - 0.9 b = 0.05 exactly (same question order, so pairs are fixed)
    r = paired_bootstrap({"x": [1, 0] * 5}, {"x": [1, 0] * 5}, weight_b=0.9, n_boot=200)
    assert r["diff"] == pytest.approx(0.05)


def test_mismatched_rows_name_the_benchmark():
    with pytest.raises(ValueError, match="x"):
        paired_bootstrap({"x": [1, 0]}, {"x": [1]})
    with pytest.raises(ValueError, match="differ"):
        paired_bootstrap({"x": [1]}, {"y": [1]})


def test_verdicts():
    assert verdict(0.1, 0.02) == "yes"
    assert verdict(0.01, -0.01) == "within noise"
    assert verdict(0.0, 0.0) == "no"
    assert verdict(-0.1, -0.2) == "no"


def _res(per_q):
    avg = {r: set_average(v) for r, v in per_q.items()}
    return {"avg_em": avg, "em_per_question": per_q}


def test_one_question_is_within_noise_and_a_wide_gap_holds():
    n = 100
    zero = {"x": [0] * n, "y": [0] * n}
    one = {"x": [1] + [0] * (n - 1), "y": [0] * n}
    strong = {"x": [1] * 40 + [0] * 60, "y": [1] * 30 + [0] * 70}
    res = _res({"student": zero, "ppo": zero, "kd": one, "dgpo": strong, "teacher": strong})
    c = claims_frame(res, n_boot=1000).set_index("claim (paper)")["holds here"]
    assert c.iloc[0] == "yes"  # student ~0
    assert c[c.index.str.startswith("KD cold start")].item() == "within noise"  # 1 of 200 questions
    # PPO never answers right: the claim holds, but only against a row at zero, and is told apart
    assert c[c.index.str.startswith("DGPO beats PPO")].item() == "yes, against a row at zero"
    assert c[c.index.str.startswith("DGPO comes near")].item() == "yes"  # equal to the teacher >= 90% of it


def test_the_papers_teacher_claim_is_tested_on_its_three_sets():
    """The paper: DGPO beats the teacher on NQ, PopQA and HotpotQA, not on average."""
    n = 100
    win = {"nq_ctx": [1] * 50 + [0] * 50, "popqa_ctx": [1] * 50 + [0] * 50, "hotpotqa_ctx": [1] * 50 + [0] * 50,
           "musique_ctx": [0] * n, "2wiki_ctx": [0] * n}
    lose = {"nq_ctx": [1] * 20 + [0] * 80, "popqa_ctx": [1] * 20 + [0] * 80, "hotpotqa_ctx": [1] * 20 + [0] * 80,
            "musique_ctx": [1] * n, "2wiki_ctx": [1] * n}
    res = {**_res({"dgpo": win, "teacher": lose}), "eval_sets": list(win)}
    c = claims_frame(res, n_boot=1000).set_index("claim (paper)")
    three = c[c.index.str.startswith("DGPO outperforms its teacher")].iloc[0]
    assert three["holds here"] == "yes" and three["difference [95% CI]"].startswith("+0.300")
    assert c[c.index.str.startswith("DGPO comes near")]["holds here"].item() == "no"  # on average it is behind
    assert "ours" in c[c.index.str.startswith("DGPO comes near")]["tested here as"].item()


def test_claims_without_per_question_data_fall_back_to_point_comparison():
    res = {"avg_em": {"kd": 0.2, "ppo": 0.1}}
    c = claims_frame(res)
    assert c["holds here"].tolist() == ["yes"] and "no per-question data" in c["difference [95% CI]"].item()


def test_dgpo_must_beat_each_kd_row_not_just_the_best():
    """The KD row with the best average is not always the hardest comparison: a lower row that is right on other
    questions than DGPO leaves a wide interval. The claim takes its weakest comparison."""
    dgpo = {"x": [1] * 40 + [0] * 60}
    best = {"x": [1] * 35 + [0] * 65}           # 0.35, right only where DGPO is: DGPO's lead is clear
    other = {"x": [0] * 40 + [1] * 30 + [0] * 30}  # 0.30, right where DGPO is not: the gap is within noise
    res = _res({"dgpo": dgpo, "kd": best, "taid": other})
    row = claims_frame(res, n_boot=1000).set_index("claim (paper)").filter(like="every KD", axis=0).iloc[0]
    assert row["holds here"] == "within noise"
    assert "TAID" in row["ours"] and row["difference [95% CI]"].startswith("+0.100")
    res = _res({"dgpo": dgpo, "kd": best})
    row = claims_frame(res, n_boot=1000).set_index("claim (paper)").filter(like="every KD", axis=0).iloc[0]
    assert row["holds here"] == "yes"


def test_targets_are_measured_on_the_answer_bearing_sets_only():
    """TriviaQA (no answer-bearing passages) is left out; the teacher's 0.4 there would not count."""
    sets = {"nq_ctx": 100, "triviaqa": 100, "bamboogle": 100}
    teacher = {"nq_ctx": [1] * 40 + [0] * 60, "triviaqa": [1] * 100, "bamboogle": [1] * 30 + [0] * 70}  # 0.35 on two
    kd = {"nq_ctx": [1] * 20 + [0] * 80, "triviaqa": [0] * 100, "bamboogle": [1] * 16 + [0] * 84}     # 0.18: > half
    dgpo = {"nq_ctx": [1] * 40 + [0] * 60, "triviaqa": [0] * 100, "bamboogle": [1] * 36 + [0] * 64}  # +0.20 over KD
    student = {s: [0] * n for s, n in sets.items()}
    res = {**_res({"teacher": teacher, "student": student, "kd": kd, "dgpo@final": dgpo}), "eval_sets": list(sets)}
    t = targets_frame(res, n_boot=1000).set_index("goal")
    assert t.loc["a teacher that searches well", "measured [95% CI]"].startswith("0.350")
    assert t.loc["a teacher that searches well", "target"] == "average EM >= 0.30"  # the miniature issue's goal
    assert t["met"].tolist() == ["yes"] * 4 + ["no"]  # 100 questions a set leave intervals wider than +-0.03
    assert t.loc["the best KD baseline reaches half the teacher", "measured [95% CI]"].startswith("KD: +0.005")
    assert t.loc["DGPO's RL stage moves its cold start", "measured [95% CI]"].startswith("DGPO (last step)")


def test_a_cold_start_left_unchanged_by_rl_does_not_move():
    same = {"nq_ctx": [1] * 10 + [0] * 90}
    res = {**_res({"kd": same, "dgpo": same}), "eval_sets": ["nq_ctx"]}
    t = targets_frame(res, n_boot=200).set_index("goal")
    assert t.loc["DGPO's RL stage moves its cold start", "met"] == "no"


def test_claims_at_zero_are_counted_apart_and_ours_shows_the_tested_sets():
    from dgpo_lib.book.claims import claims_summary

    n = 100
    zero = {"nq_ctx": [0] * n, "popqa_ctx": [0] * n, "hotpotqa_ctx": [0] * n, "musique_ctx": [0] * n}
    kd = {"nq_ctx": [1] * 30 + [0] * 70, "popqa_ctx": [1] * 30 + [0] * 70, "hotpotqa_ctx": [1] * 30 + [0] * 70,
          "musique_ctx": [1] * 10 + [0] * 90}
    teacher = {s: [1] * 40 + [0] * 60 for s in kd}
    res = {**_res({"student": zero, "ppo": zero, "kd": kd, "dgpo": kd, "teacher": teacher}), "eval_sets": list(kd)}
    res["em"] = {r: {s: sum(v) / len(v) for s, v in d.items()} for r, d in res["em_per_question"].items()}
    claims = claims_frame(res, n_boot=500, cold_starts=["dgpo"])
    c = claims.set_index("claim (paper)")
    assert c.filter(like="KD cold start beats PPO", axis=0)["holds here"].item() == "yes, against a row at zero"
    # the three-set claim shows the three-set averages (0.300 and 0.400), not the four-set ones
    three = c.filter(like="outperforms its teacher", axis=0).iloc[0]
    assert "0.300 vs Teacher 0.400" in three["ours"] and three["holds here"] == "no"
    # DGPO whose selected checkpoint is its cold start is named so wherever it appears
    assert "(= its KD start: step 0 selected)" in c.filter(like="DGPO beats PPO", axis=0)["ours"].item()
    s = claims_summary(claims)
    assert (s["total"], s["held"], s["at_zero"], s["at_zero_rows"]) == (5, 0, 2, ["ppo"])
    assert s["noise"] + s["failed"] == 3


def test_results_bullets_say_what_the_numbers_decide():
    from dgpo_lib.book.readings import box, results_bullets

    summary = {"total": 5, "held": 1, "at_zero": 2, "noise": 1, "failed": 1, "at_zero_rows": ["ppo"]}
    res = {"avg_em": {"ppo": 0.0, "dgpo": 0.02, "kd": 0.02}}
    bullets = results_bullets(res, ["ppo", "kd", "dgpo"], summary, ["dgpo"], "spread sentence")
    assert bullets[0] == ("Of the paper's 5 comparison claims, 1 holds beyond resampling noise against a row above "
                          "zero; 1 points its way within noise; 1 fails.")
    assert "2 hold only against a row at zero (PPO 0.000" in bullets[1]
    assert bullets[2].startswith("DGPO: validation EM never rose above step 0") and "DGPO: KD" in bullets[2]
    assert bullets[3] == "spread sentence"
    text = box("What this run shows", bullets)
    assert text.startswith(":::{admonition} What this run shows\n:class: important") and text.endswith(":::")
    assert box("empty", ["", ""]) == ""

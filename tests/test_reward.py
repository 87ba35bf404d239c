import pytest

from dgpo_lib.env.reward import exact_match, f1_score, normalize_answer
from dgpo_lib.env.rollout import parse_action


@pytest.mark.parametrize("text,norm", [
    ("The Beatles", "beatles"),
    ("  Paris,  France. ", "paris france"),
    ("an Apple a day", "apple day"),
    ("U.S.A.", "usa"),
    ('"""Dictes or Sayenges of Phylosophers"""', "dictes or sayenges of phylosophers"),
    ("Theatre", "theatre"),  # 'the' only as a whole word
])
def test_normalize(text, norm):
    assert normalize_answer(text) == norm


@pytest.mark.parametrize("pred,gold,em", [
    ("the beatles", ["The Beatles"], 1.0),
    ("Beatles!", ["The Beatles", "Fab Four"], 1.0),
    ("fab four", ["The Beatles", "Fab Four"], 1.0),
    ("Beatle", ["The Beatles"], 0.0),
    ("Paris France", ["Paris"], 0.0),
    ("", ["Paris"], 0.0),
    (None, ["Paris"], 0.0),
    ("14 December 1972", ["14 December 1972 UTC", "December 1972"], 0.0),
    ("december 1972", ["14 December 1972 UTC", "December 1972"], 1.0),
])
def test_exact_match(pred, gold, em):
    assert exact_match(pred, gold) == em


def test_f1():
    assert f1_score("Paris France", ["Paris"]) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert f1_score("yes", ["no"]) == 0.0 and f1_score("yes", ["yes"]) == 1.0
    assert f1_score(None, ["x"]) == 0.0


def test_the_scored_answer_is_the_action_of_the_turn():
    """A turn's action is its first complete <search> or <answer> (Search-R1's postprocess_predictions); the
    episode's EM is that answer's (the prompt's example '<answer> Beijing </answer>' is never scored)."""
    assert parse_action("<think>x</think><answer> Paris </answer>") == ("answer", "Paris")
    assert parse_action("<answer>a</answer> then <answer> b </answer>") == ("answer", "a")
    assert parse_action("<search> q </search><answer>a</answer>") == ("search", "q")
    assert parse_action("<answer> unterminated") == (None, "")
    assert exact_match(None, ["Beijing"]) == 0.0 and exact_match("Beijing", ["beijing"]) == 1.0

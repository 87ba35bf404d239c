import pytest

from dgpo_lib.env.reward import em_reward, exact_match, extract_answer, f1_score, normalize_answer


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


def test_extract_from_response_only_and_last_match():
    assert extract_answer("<think>x</think><answer> Paris </answer>") == "Paris"
    assert extract_answer("<answer>a</answer> then <answer> b </answer>") == "b"
    assert extract_answer("<answer> unterminated") is None
    assert extract_answer("no tags") is None
    # the prompt's example '<answer> Beijing </answer>' is never part of the response we score
    assert em_reward("<search> q </search>", ["Beijing"]) == 0.0
    assert em_reward("<answer>Beijing</answer>", ["beijing"]) == 1.0

"""The `cpu` preset's data: answer-bearing evaluation sets, a corpus in wiki-18's shape that holds their gold
passages, and training/validation questions that never share a question with evaluation."""
from __future__ import annotations

import gzip
import json

import pytest

from dgpo_lib.config import load_config
from dgpo_lib.data.corpus import CorpusBuilder, has_answer, split_words
from dgpo_lib.data.loaders import (REPO_ROOT, load_cfg_corpus, load_eval_sets, load_train_questions, load_val_questions,
                           question_key)
from dgpo_lib.env.reward import normalize_answer


@pytest.fixture(scope="module")
def cpu_cfg():
    return load_config("cpu")


def test_training_and_validation_never_hold_an_evaluation_question(cpu_cfg):
    evals = load_eval_sets(cpu_cfg)
    eval_keys = {question_key(q.question) for qs in evals.values() for q in qs}
    train, val = load_train_questions(cpu_cfg), load_val_questions(cpu_cfg)
    train_keys = {question_key(q.question) for q in train}
    val_keys = {question_key(q.question) for q in val}
    assert len(val) == cpu_cfg.data.n_val and len(train) > 2000
    assert not train_keys & eval_keys and not val_keys & eval_keys and not train_keys & val_keys
    # the check is on text, not ids: the same NQ question under another file's id is still caught
    nq_eval = evals["nq_ctx"][0]
    assert question_key(nq_eval.question.upper() + " ") in eval_keys
    # the paper's training pools: NQ and HotpotQA only
    assert {q.dataset.split("_")[0] for q in train + val} == {"nq", "hotpotqa"}


def test_evaluation_sets_are_answer_bearing_and_large_enough(cpu_cfg):
    evals = load_eval_sets(cpu_cfg)
    corpus = {p.id: p for p in load_cfg_corpus(cpu_cfg)}
    for name, qs in evals.items():
        assert len(qs) >= (125 if name == "bamboogle" else 200), name
        if name in ("triviaqa", "bamboogle"):
            continue
        for q in qs:
            ids = q.metadata["supporting_ids"]
            assert ids and all(i in corpus for i in ids), (name, q.id)
            yes_no = normalize_answer(q.golden_answers[0]) in ("yes", "no")
            assert yes_no or any(has_answer(corpus[i].text, q.golden_answers) for i in ids), (name, q.id)
    # the same seed gives the same questions
    assert [q.id for q in evals["nq_ctx"]] == [q.id for q in load_eval_sets(cpu_cfg)["nq_ctx"]]


def test_split_words_cuts_like_wiki18():
    assert split_words("a " * 120) == ["a " * 119 + "a"]            # up to 120 words: one passage
    blocks = split_words(" ".join(str(i) for i in range(250)))
    assert [len(b.split()) for b in blocks] == [84, 84, 82]        # ceil(250/100) near-equal blocks
    assert " ".join(blocks).split() == [str(i) for i in range(250)]  # nothing lost or repeated


def test_has_answer_is_normalised_whole_words():
    assert has_answer("The Eiffel Tower is in PARIS, France.", ["paris"])
    assert not has_answer("Parisian cafes", ["Paris"])                # whole words only
    assert has_answer("built by the Romans", ["Romans."])
    assert not has_answer("anything", ["the", ""])                   # an answer that normalises to nothing


def test_corpus_builder_dedups_on_normalised_text():
    b = CorpusBuilder()
    [a] = b.add("Paris", "Paris is the capital of France.", "s1")
    assert b.add('"Paris"', "paris is the capital of france", "s2") == [a]        # same text, other source
    [c] = b.add("Paris", "Paris is the capital of France. It is on the Seine.", "s2")
    assert c == a and b.text(a).endswith("Seine.")                                # the longer text kept
    assert b.add("Paris", "It is on the Seine.", "s3") == [a]                    # contained in it
    assert len(b.rows()) == 1 and b.stats()["kept_by_source"] == {"s1": 1}


def test_committed_corpus_is_wiki18_shaped_and_byte_stable(tmp_path):
    from dgpo_lib.io_utils import atomic_write_jsonl
    path = REPO_ROOT / "data/corpus/cpu_corpus.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(x) for x in f]
    words = sorted(len(r["contents"].split("\n", 1)[1].split()) for r in rows)
    assert words[int(0.99 * len(words))] <= 120 and all(r["contents"].startswith('"') for r in rows)
    out = tmp_path / "c.jsonl.gz"
    atomic_write_jsonl(out, rows[:50])
    again = tmp_path / "d.jsonl.gz"
    atomic_write_jsonl(again, rows[:50])
    assert out.read_bytes() == again.read_bytes()                                  # no timestamp in the gzip


def test_answer_index_agrees_with_a_scan(corpus):
    from dgpo_lib.data.card import AnswerIndex
    idx = AnswerIndex(corpus)
    probes = [["Paris"], ["united states"], ["zzzz qqqq"], ["1912"], ["the"]]
    for answers in probes:
        assert idx.holds(answers) == any(has_answer(p.text, answers) for p in corpus), answers

import json

import pytest

from dgpo_lib.data.loaders import (DataError, load_corpus, load_eval_sets, load_qa, load_train_questions, qa_path,
                           seeded_subset)


def _write(tmp_path, lines, name="x.jsonl", raw=None):
    p = tmp_path / name
    if raw is not None:
        p.write_bytes(raw)
    else:
        p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


GOOD = json.dumps({"id": "1", "question": "who?", "golden_answers": ["me"]})


@pytest.mark.parametrize("line,msg", [
    ('{"id": "2", "question": "who?", "golden_answers": ["me"', "x.jsonl:2: broken JSON"),
    ('{"id": "2", "golden_answers": ["me"]}', "x.jsonl:2: missing field 'question'"),
    ('{"id": "2", "question": "   ", "golden_answers": ["me"]}', "x.jsonl:2: field 'question' is empty"),
    ('{"id": "2", "question": "q", "golden_answers": "me"}', "x.jsonl:2: field 'golden_answers' must be list"),
    ('{"id": "2", "question": 7, "golden_answers": ["me"]}', "x.jsonl:2: field 'question' must be str"),
    ('{"id": "2", "question": "q", "golden_answers": []}', "x.jsonl:2: field 'golden_answers' must be a non-empty"),
    ('[1, 2]', "x.jsonl:2: expected a JSON object"),
])
def test_bad_qa_lines_name_file_line_field(tmp_path, line, msg):
    p = _write(tmp_path, [GOOD, line])
    with pytest.raises(DataError, match=msg):
        load_qa(p)


def test_non_utf8_and_missing_file(tmp_path):
    p = _write(tmp_path, [], raw=GOOD.encode() + b"\n" + b'{"id": "\xff"}\n')
    with pytest.raises(DataError, match="x.jsonl:2: not valid UTF-8"):
        load_qa(p)
    with pytest.raises(DataError, match="does not exist"):
        load_qa(tmp_path / "nope.jsonl")


def test_corpus_schema(tmp_path):
    p = _write(tmp_path, [json.dumps({"id": "0", "contents": '"Eiffel Tower"\nA tower in Paris.'})])
    [ps] = load_corpus(p)
    assert (ps.title, ps.text, ps.contents) == ("Eiffel Tower", "A tower in Paris.", '"Eiffel Tower"\nA tower in Paris.')
    bad = _write(tmp_path, [json.dumps({"id": "0", "contents": "no newline"})], "c.jsonl")
    with pytest.raises(DataError, match="c.jsonl:1: field 'contents' must be 'Title"):
        load_corpus(bad)


def test_repo_data_is_complete_and_attributed():
    from dgpo_lib.data.loaders import REPO_ROOT
    sizes = {"nq": 3610, "triviaqa": 11313, "hotpotqa": 7405, "2wiki": 12576, "musique": 2417, "bamboogle": 125,
             "popqa": 1399}
    for name, n in sizes.items():
        assert len(load_qa(qa_path("data", name))) == n
    from dgpo_lib.env.reward import normalize_answer
    corpus = load_corpus(REPO_ROOT / "data/corpus/cpu_corpus.jsonl.gz")
    assert len(corpus) > 20000 and len({normalize_answer(p.text) for p in corpus}) == len(corpus)  # de-duplicated
    text = (REPO_ROOT / "data/ATTRIBUTION.md").read_text()
    for lic in ("CC BY-SA", "Apache-2.0", "MIT", "CC BY 4.0"):
        assert lic in text


def test_subsets_are_seeded_and_fixed(smoke_cfg):
    a, b = load_eval_sets(smoke_cfg), load_eval_sets(smoke_cfg)
    assert [q.id for q in a["nq_ctx"]] == [q.id for q in b["nq_ctx"]] and len(a["nq_ctx"]) == smoke_cfg.data.n_eval
    rows = list(range(100))
    assert seeded_subset(rows, 10, 0, "x") == seeded_subset(rows, 10, 0, "x") != seeded_subset(rows, 10, 1, "x")
    tr = load_train_questions(smoke_cfg)
    assert len(tr) == smoke_cfg.data.n_train and {q.dataset for q in tr} <= set(smoke_cfg.data.train_sets)
    # gold passages of the answer-bearing eval questions point into the corpus
    for name in ("nq_ctx", "popqa_ctx", "hotpotqa_ctx", "2wiki_ctx", "musique_ctx"):
        for q in a[name]:
            assert q.metadata["supporting_ids"]


def test_rest_split_holds_out_every_evaluation_question(smoke_cfg):
    import copy
    from dgpo_lib.data.loaders import load_eval_sets, load_train_set
    cfg = copy.deepcopy(smoke_cfg)
    cfg.data.eval_sets = ["hotpotqa_ctx"]
    cfg.data.n_eval = 30
    held = {q.id for q in load_eval_sets(cfg)["hotpotqa_ctx"]}
    rest = load_train_set(cfg, "hotpotqa_ctx:rest")
    assert len(held) == 30 and not held & {q.id for q in rest}
    assert len(rest) + len(held) == len(load_train_set(cfg, "hotpotqa_ctx"))
    cfg.data.n_train_per_set = {"hotpotqa_ctx:rest": 5}
    assert len(load_train_set(cfg, "hotpotqa_ctx:rest")) == 5
    with pytest.raises(ValueError, match="suffix"):
        load_train_set(cfg, "hotpotqa_ctx:other")

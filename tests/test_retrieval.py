import pytest

from dgpo_lib.data.loaders import Passage
from dgpo_lib.env.prompts import format_docs, information_block
from dgpo_lib.env.retrieval import (BM25Retriever, DenseRetriever, Encoder, IndexMismatchError, recall_at_k)


def test_docs_format_exactly_as_search_r1():
    ps = [Passage("0", "Evan Morris", "Evan L. Morris was a lobbyist."), Passage("1", "B", "text b")]
    assert format_docs(ps) == 'Doc 1(Title: "Evan Morris") Evan L. Morris was a lobbyist.\nDoc 2(Title: "B") text b\n'
    assert information_block(ps).startswith("\n\n<information>Doc 1(") and \
        information_block(ps).endswith("text b</information>\n\n")


def test_dense_finds_gold_passage_for_known_question(dense, corpus):
    # NQ-open test: "who got the first nobel prize in physics" has the gold passage "List of Nobel laureates in
    # Physics", which holds the answer (Wilhelm Conrad Röntgen)
    hits = dense.search(["who got the first nobel prize in physics"], 3)[0]
    assert "List of Nobel laureates in Physics" in {p.title for p in hits}
    assert any("Röntgen" in p.text for p in hits)
    hits = dense.search(["List of Nobel laureates in Physics"], 1)[0]
    assert hits[0].title == "List of Nobel laureates in Physics"


def test_recall_on_multihop(dense, smoke_cfg):
    from dgpo_lib.data.loaders import load_eval_sets
    r = recall_at_k(dense, load_eval_sets(smoke_cfg)["hotpotqa_ctx"], 3)
    assert r["n"] == smoke_cfg.data.n_eval and r["any_hit"] > 0.5


def test_index_reload_and_mismatch(dense, corpus, tmp_path):
    enc = dense.encoder
    d = tmp_path / "idx"
    built = DenseRetriever.build(corpus[:50], enc, d, progress=False)
    again = DenseRetriever.load(corpus[:50], enc, d)
    q = [corpus[3].title]
    assert [p.id for p in built.search(q, 3)[0]] == [p.id for p in again.search(q, 3)[0]]
    with pytest.raises(IndexMismatchError, match="corpus_fingerprint"):
        DenseRetriever.load(corpus[:49] + [corpus[60]], enc, d)
    enc2 = Encoder.__new__(Encoder)
    enc2.__dict__.update(enc.__dict__, name="other-encoder")
    with pytest.raises(IndexMismatchError, match="encoder"):
        DenseRetriever.load(corpus[:50], enc2, d)


def test_ivf_index_matches_flat_on_easy_queries(dense, corpus, tmp_path):
    ivf = DenseRetriever.build(corpus, dense.encoder, tmp_path / "ivf", index_type="ivf", nlist=8, nprobe=8,
                               progress=False)
    q = [p.title for p in corpus[:20]]
    assert [h[0].id for h in ivf.search(q, 1)] == [h[0].id for h in dense.search(q, 1)]


def test_bm25(corpus):
    bm = BM25Retriever(corpus)
    assert bm.search(["first Nobel Prize in Physics 1901 laureates"], 3)[0][0].title == "List of Nobel laureates in Physics"
    assert bm.search([], 3) == []


def test_passage_format_and_a_prebuilt_index(corpus, tmp_path):
    """Search-R1 encodes wiki-18's `contents` ('"Title"\\ntext'); a prebuilt faiss index over the same corpus is
    loaded after checking its size and dimension."""
    import numpy as np
    from dgpo_lib.env.retrieval import DenseRetriever
    ps = corpus[:40]
    a = Encoder("minilm", 64, passage_format="contents")
    b = Encoder("minilm", 64, passage_format="title_dot")
    assert not np.allclose(a.encode_passages(ps[:2]), b.encode_passages(ps[:2]))
    built = DenseRetriever.build(ps, a, tmp_path / "idx", progress=False)
    pre = DenseRetriever.from_prebuilt(ps, a, tmp_path / "idx" / "index.faiss")
    qs = [p.title for p in ps[:5]]
    assert [[p.id for p in r] for r in pre.search(qs, 3)] == [[p.id for p in r] for r in built.search(qs, 3)]
    with pytest.raises(IndexMismatchError, match="39 passages"):
        DenseRetriever.from_prebuilt(ps[:-1], a, tmp_path / "idx" / "index.faiss")
    with pytest.raises(FileNotFoundError, match="retrieval.index_path"):
        DenseRetriever.from_prebuilt(ps, a, tmp_path / "nope.index")
    with pytest.raises(ValueError, match="passage_format"):
        Encoder("minilm", 64, passage_format="nope")

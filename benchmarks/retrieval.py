"""Retrieval: passages/s to encode, queries/s, gold-passage recall@3 and answer-in-top-3 on every evaluation set
for the faiss index vs exact numpy search vs BM25.

    .venv/bin/python benchmarks/retrieval.py [--preset cpu]
"""
from __future__ import annotations

import time

import numpy as np
from common import table, write

from dgpo_lib.cli import parse, parser
from dgpo_lib.config import load_config
from dgpo_lib.data.card import top3_answer_hit
from dgpo_lib.pipeline import Run
from dgpo_lib.env.retrieval import BM25Retriever, ExactNumpyRetriever, recall_at_k


def main():
    ap = parser(__doc__)
    ap.add_argument("--encode", type=int, default=1024, help="passages timed for the encoding rate")
    a = parse(ap)
    cfg = load_config(a.preset, a.overrides)
    run = Run(cfg, progress=False)
    dense = run.resources.retriever()
    enc, passages = dense.encoder, dense.passages
    t = time.perf_counter()
    emb_part = enc.encode_passages(passages[: a.encode], cfg.retrieval.encode_batch)
    enc_rate = len(emb_part) / (time.perf_counter() - t)
    emb = np.vstack([dense.index.reconstruct(i) for i in range(dense.index.ntotal)]) \
        if cfg.retrieval.index_type == "flat" else enc.encode_passages(passages, cfg.retrieval.encode_batch)
    t = time.perf_counter()
    bm25 = BM25Retriever(passages)
    bm25_build = time.perf_counter() - t
    sets = run.resources.eval_sets()
    queries = [q.question for qs in sets.values() for q in qs]
    rows = []
    for name, r in (("faiss " + cfg.retrieval.index_type, dense), ("exact numpy", ExactNumpyRetriever(passages, enc, emb)),
                    ("BM25", bm25)):
        t = time.perf_counter()
        r.search(queries, cfg.retrieval.topk)
        qps = len(queries) / (time.perf_counter() - t)
        rec = {k: recall_at_k(r, qs, cfg.retrieval.topk) for k, qs in sets.items()}
        hit = {k: float(np.mean(top3_answer_hit(r, qs, cfg.retrieval.topk))) for k, qs in sets.items()}
        rows.append({"retriever": name, "queries_per_s": qps,
                     **{f"recall@3 {k}": v["passage_recall"] for k, v in rec.items() if v["n"]},
                     **{f"answer@3 {k}": v for k, v in hit.items()}})
    cols = ["retriever", "queries_per_s"] + [c for c in rows[0] if c.startswith(("recall@3", "answer@3"))]
    index_s = dense.meta.get("build_s")
    print(f"encoding: {enc_rate:.0f} passages/s ({cfg.retrieval.encoder}, {cfg.retrieval.encoder_dtype}); "
          f"faiss index of {len(passages):,} passages built in {index_s} s; BM25 index build {bm25_build:.1f}s")
    print(table(rows, cols))
    write(f"retrieval_{a.preset}", {"encode_passages_per_s": enc_rate, "index_build_s": index_s,
                                    "bm25_build_s": bm25_build,
                                    "n_passages": len(passages), "n_queries": len(queries), "rows": rows}, cfg)


if __name__ == "__main__":
    main()

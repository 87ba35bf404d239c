"""How far IVF-PQ's top-3 is from the exact (Flat) top-3: the share of Flat's top-3 passages IVF-PQ also returns,
and answer-in-top-3 for both, on every evaluation question, at several nprobe.

The `paper` preset's exact index needs ~65 GB; `retrieval.index_type=ivfpq` (pq_m bytes per vector) fits in
~1.4 GB but is approximate. This measures the approximation with the project's own index code, on the `cpu`
preset's corpus and encoder (MiniLM over ~23k passages, the Flat index the main job built), with the paper
preset's passages-per-list (wiki-18: 21M passages / 65,536 lists = ~320) and sub-quantiser count (pq_m=64):

    .venv/bin/python benchmarks/ivfpq_overlap.py [--preset cpu] [--nprobe 1 4 16]

It writes `results/ivfpq_overlap_<preset>.json` and the printed table beside it (`.txt`, shown in the book);
`--render` only rewrites the table from the JSON.
"""
from __future__ import annotations

import json
import time

import numpy as np
from common import RESULTS, table, write

from dgpo_lib.cli import parse, parser
from dgpo_lib.config import load_config
from dgpo_lib.data.card import top3_answer_hit
from dgpo_lib.pipeline import Run
from dgpo_lib.env.retrieval import DenseRetriever, make_faiss_index


def render(payload: dict) -> str:
    return (f"{payload['n_passages']:,} passages ({payload['encoder']}), {payload['n_queries']:,} evaluation "
            f"questions, IVF-PQ with {payload['nlist']} lists\n"
            + table(payload["rows"], ["index", "nprobe", "top3_overlap", "same_top1", "answer@3"]) + "\n")


def main():
    ap = parser(__doc__)
    ap.add_argument("--per_list", type=int, default=320, help="passages per IVF list (the paper preset's ~320)")
    ap.add_argument("--pq_m", type=int, default=64)
    ap.add_argument("--nprobe", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--render", action="store_true", help="only rewrite the .txt table from the saved JSON")
    a = parse(ap)
    txt = RESULTS / f"ivfpq_overlap_{a.preset}.txt"
    if a.render:
        txt.write_text(render(json.loads((RESULTS / f"ivfpq_overlap_{a.preset}.json").read_text())))
        return
    cfg = load_config(a.preset, a.overrides)
    if cfg.retrieval.index_type != "flat":
        raise SystemExit("the reference must be the exact index: use a preset with retrieval.index_type=flat")
    run = Run(cfg, progress=False)
    flat = run.resources.retriever()
    k = cfg.retrieval.topk
    emb = flat.index.reconstruct_n(0, flat.index.ntotal)
    nlist = max(1, len(emb) // a.per_list)
    t = time.perf_counter()
    ivfpq = make_faiss_index(emb.shape[1], "ivfpq", len(emb), nlist=nlist, pq_m=a.pq_m)
    ivfpq.train(emb)
    ivfpq.add(emb)
    build_s = time.perf_counter() - t
    sets = run.resources.eval_sets()
    questions = [q for qs in sets.values() for q in qs]
    q_emb = flat.encoder.encode_queries([q.question for q in questions])
    _, exact_ids = flat.index.search(q_emb, k)
    approx = DenseRetriever(flat.passages, flat.encoder, ivfpq, {})
    rows = [{"index": "flat (exact)", "nprobe": "-", "top3_overlap": 1.0, "same_top1": 1.0,
             "answer@3": float(np.mean(top3_answer_hit(flat, questions, k)))}]
    for nprobe in a.nprobe:
        ivfpq.nprobe = nprobe
        _, ids = ivfpq.search(q_emb, k)
        overlap = np.mean([len(set(e) & set(i)) / k for e, i in zip(exact_ids.tolist(), ids.tolist())])
        rows.append({"index": f"ivfpq (nlist {nlist}, m {a.pq_m})", "nprobe": nprobe, "top3_overlap": float(overlap),
                     "same_top1": float(np.mean(exact_ids[:, 0] == ids[:, 0])),
                     "answer@3": float(np.mean(top3_answer_hit(approx, questions, k)))})
    payload = {"n_passages": len(emb), "n_queries": len(questions), "encoder": cfg.retrieval.encoder,
               "nlist": nlist, "pq_m": a.pq_m, "build_s": build_s, "rows": rows}
    print(render(payload))
    write(f"ivfpq_overlap_{a.preset}", payload, cfg)
    txt.write_text(render(payload))

if __name__ == "__main__":
    main()

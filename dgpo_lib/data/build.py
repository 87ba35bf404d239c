"""Convert the raw benchmark files (../shared/data) into the repo's FlashRAG-format `data/` folder.

Run once by a maintainer (`python -m dgpo_lib.data.build --src ../shared/data --out data`); the output is
committed, so users and CI never need the raw folder. Nothing here edits question or answer text.

Outputs
- `qa/<name>.jsonl`: FlashRAG QA schema `{"id", "question", "golden_answers", "metadata"}`. The full benchmark
  splits keep their plain names (`nq`, `triviaqa`, ...). The answer-bearing sets carry
  `metadata.supporting_titles` (what the oracle searches), `metadata.supporting_ids` (their gold passages in the CPU
  corpus) and `metadata.answer_in_gold` (a gold passage holds a normalised gold answer):
  - evaluation pools: `nq_ctx`, `popqa_ctx`, `hotpotqa_ctx`, `2wiki_ctx`, `musique_ctx`, `bamboogle`;
  - training-only pools: `nq_ctx_extra`, `hotpotqa_train_ctx`, `hotpotqa_train`.
- `corpus/cpu_corpus.jsonl.gz`: the CPU corpus in the wiki-18 layout `{"id", "contents": "\"Title\"\\ntext"}`,
  gold passages first, then real distractors; `corpus/cpu_corpus.stats.json`: passages per source.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from dgpo_lib.data.corpus import CorpusBuilder, collapse_ws, has_answer
from dgpo_lib.data.loaders import question_key as qkey
from dgpo_lib.env.reward import normalize_answer
from dgpo_lib.io_utils import atomic_write_json, atomic_write_jsonl

RAW_QA = {  # full splits: name -> (relative path, question field, answers field, id field or None)
    "nq": ("raw/nq/NQ-open.dev.jsonl", "question", "answer", None),
    "triviaqa": ("raw/triviaqa/triviaqa_dpr_test.jsonl", "question", "golden_answers", "id"),
    "popqa": ("raw/popqa/popqa_longtail_selfrag.jsonl", "question", "answers", "question_id"),
    "hotpotqa": ("raw/hotpotqa/hotpotqa_dev_distractor_qa.jsonl", "question", "golden_answers", "id"),
    "2wiki": ("raw/2wikimultihopqa/2wiki_dev_qa.jsonl", "question", "golden_answers", "id"),
    "musique": ("raw/musique/musique_ans_dev_qa.jsonl", "question", "golden_answers", "id"),
    "nq_train": ("raw/nq/nq_dpr_dev_split_of_train.jsonl", "question", "golden_answers", "id"),
}
WP = "raw/with_passages"
# Hard negatives kept per NQ evaluation-pool question (of 19): the whole corpus must encode in about 5 minutes on
# 2 CPU cores (~75 passages/s with MiniLM in bfloat16), which holds about 23k passages.
NQ_NEGATIVES = 10
YES_NO = {"yes", "no"}


def _read(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    return [json.loads(line) for line in text.split("\n") if line.strip()]  # not splitlines: U+2028 occurs in text



class Builder:
    def __init__(self, src: Path, out: Path):
        self.src, self.out = Path(src), Path(out)
        self.corpus = CorpusBuilder()
        self.counts: dict[str, int] = {}

    def read(self, rel: str) -> list[dict]:
        return _read(self.src / rel)

    def write_qa(self, name: str, rows: list[dict]) -> None:
        atomic_write_jsonl(self.out / "qa" / f"{name}.jsonl", rows)
        self.counts[name] = len(rows)

    def row(self, qid, question, answers, source, gold_titles, gold_ids, **meta) -> dict:
        gold_ids = list(dict.fromkeys(gold_ids))
        in_gold = any(has_answer(self.corpus.text(i), answers) for i in gold_ids)
        return {"id": str(qid), "question": question, "golden_answers": list(answers),
                "metadata": {"source": source, "supporting_titles": list(dict.fromkeys(gold_titles)),
                             "supporting_ids": gold_ids, "answer_in_gold": in_gold, **meta}}

    # ---------------------------------------------------------------- full splits
    def full_splits(self) -> dict[str, list[dict]]:
        out = {}
        for name, (rel, qf, af, idf) in RAW_QA.items():
            rows = []
            for i, r in enumerate(self.read(rel)):
                ans = r[af] if isinstance(r[af], list) else [r[af]]
                rows.append({"id": str(r[idf]) if idf else str(i), "question": r[qf], "golden_answers": ans,
                             "metadata": {"source": rel}})
            self.write_qa(name, rows)
            out[name] = rows
        return out

    # ---------------------------------------------------------------- gold passages
    def nq(self, full: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
        """NQ-open test questions with their gold passage; the 441 with 19 wiki-18 hard negatives each are the
        evaluation pool, the others train. Ids are rows of `qa/nq.jsonl` (the same questions)."""
        rel = f"{WP}/nq/nq_open_test_oracle_2655.jsonl"
        ids = {qkey(r["question"]): r["id"] for r in full}
        hard = self.read(f"{WP}/nq/nq_open_test_20docs_441.jsonl")
        hard_keys = {qkey(r["question"]) for r in hard}
        ev, extra = [], []
        for r in self.read(rel):
            g = r["gold"]
            pids = self.corpus.add(g["title"], g["text"], "nq gold")
            row = self.row(ids[qkey(r["question"])], r["question"], r["answers"], rel, [g["title"]], pids)
            (ev if qkey(r["question"]) in hard_keys else extra).append(row)
        return ev, extra, hard

    def popqa(self) -> list[dict]:
        """PopQA with the subject's lead paragraph (gold: what a search for the question finds) and the object's
        (the answer's own page, kept in the corpus as a real passage but not counted as gold)."""
        rel = f"{WP}/popqa/popqa_hipporag2_1000.json"
        rows = []
        for r in self.read(rel):
            subj, obj = r["paragraphs"][0], r["paragraphs"][1]
            pids = self.corpus.add(subj["title"], subj["text"], "popqa subject")
            self.corpus.add(obj["title"], obj["text"], "popqa object")
            rows.append(self.row(r["id"], r["question"], json.loads(r["possible_answers"]), rel, [subj["title"]],
                                 pids, prop=r["prop"], s_pop=r["s_pop"]))
        return rows

    def multihop(self, name: str, split: str, ids: dict[str, str]) -> list[dict]:
        """PruneRAG's 500 questions with their gold paragraphs ("Title\\ntext"), and whether the paper's retrieval
        (e5-base-v2 top-3 over wiki-18) holds an answer."""
        rel = f"{WP}/multihop/{name}_500_questions_golden_context.json"
        e5 = {r["id"]: r["context"] for r in self.read(f"{WP}/multihop/{name}_500_wiki18_e5_top3.jsonl")}
        rows = []
        for r in self.read(rel):
            titles, pids = [], []
            for c in r["golden_context"]:
                title, _, text = c.partition("\n")
                titles.append(collapse_ws(title))
                pids += self.corpus.add(title, text, f"{name} {split} gold (PruneRAG)")
            e5_hit = any(has_answer(t.partition("\n")[2], r["answer"]) for _, t in e5[r["id"]])
            qid = ids.get(qkey(r["Question"]), f"pr-{name}-{r['id']}")
            rows.append(self.row(qid, r["Question"], r["answer"], rel, titles, pids, paper_e5_top3_has_answer=e5_hit))
        return rows

    def hotpot_dev_evidence(self) -> list[dict]:
        """HotpotQA dev questions with gold paragraphs: the first 103 with their 10-paragraph distractor context,
        then ECM's 1,000 with the gold evidence sentences grouped by title."""
        rel = "raw/hotpotqa/hotpotqa_dev_distractor_first103_with_context.jsonl"
        rows = []
        for r in self.read(rel):
            ids_by_title = {t: self.corpus.add(t, "".join(s), "hotpotqa dev context") for t, s in r["context"]}
            titles = sorted({t for t, _ in r["supporting_facts"]})
            rows.append(self.row(r["_id"], r["question"], [r["answer"]], rel, titles,
                                 [i for t in titles for i in ids_by_title.get(t, [])], type=r.get("type")))
        seen = {qkey(r["question"]) for r in rows}
        rel = "raw/hotpotqa/hotpotqa_dev1000_gold_evidence_ecm.jsonl"
        for i, r in enumerate(self.read(rel)):
            if qkey(r["question"]) in seen:
                continue
            by_title: dict[str, list[str]] = {}
            for ev in r["evidence"]:
                title, _, sent = ev.partition(" | ")
                by_title.setdefault(title.strip(), []).append(sent.strip())
            pids = [i for t, s in by_title.items() for i in self.corpus.add(t, " ".join(s), "hotpotqa dev evidence")]
            rows.append(self.row(f"ecm-dev-{i}", r["question"], [r["answer"]], rel, sorted(by_title), pids,
                                 type=r.get("type")))
        return rows

    def hotpot_train_hipporag(self) -> list[dict]:
        rel = "raw/hotpotqa/hotpotqa_train100_with_context_hipporag.jsonl"
        rows = []
        for r in self.read(rel):
            ids_by_title = {t: self.corpus.add(t, "".join(s), "hotpotqa train context (HippoRAG)") for t, s in r["context"]}
            titles = sorted({t for t, _ in r["supporting_facts"]})
            rows.append(self.row(r["_id"], r["question"], [r["answer"]], rel, titles,
                                 [i for t in titles for i in ids_by_title.get(t, [])], type=r.get("type")))
        return rows

    def bamboogle(self, full_rel: str = "raw/bamboogle/bamboogle_test.jsonl") -> list[dict]:
        """All 125 Bamboogle questions; gold = the answer-bearing passages among the merged sources (wiki-18 e5/bge
        top-21, 2019 Wikipedia from R1-Searcher's runs); the e5 top-3 passages join the corpus as retrieved."""
        e5 = {r["query"]: r["context"] for r in self.read(f"{WP}/bamboogle/bamboogle_wiki18_e5_top3.jsonl")}
        merged = {qkey(r["question"]): r for r in self.read("derived/bamboogle_passages_merged.jsonl")}
        rows = []
        for r in self.read(full_rel):
            m = merged[qkey(r["question"])]
            titles, pids = [], []
            for p in m["passages"]:
                if p["has_answer"]:
                    titles.append(collapse_ws(p["title"]))
                    pids += self.corpus.add(p["title"], p["text"], f"bamboogle {p['source'].split('_')[0]}")
            e5_hit = any(has_answer(t.partition("\n")[2], r["golden_answers"]) for _, t in e5[r["question"]])
            rows.append(self.row(r["id"], r["question"], r["golden_answers"], full_rel, titles, pids,
                                 paper_e5_top3_has_answer=e5_hit))
        return rows

    # ---------------------------------------------------------------- distractors
    def add_wiki18(self, rel: str, source: str, field: str = "context") -> None:
        """wiki-18 passages retrieved for questions (PruneRAG files: [row id, '"Title"\\ntext'])."""
        for r in self.read(rel):
            for _, contents in r[field]:
                title, _, text = contents.partition("\n")
                self.corpus.add(title, text, source, split=False)

    def add_nq_negatives(self, hard: list[dict], per_question: int) -> None:
        """The first `per_question` of each question's answer-free wiki-18 passages (Contriever's ranking)."""
        for r in hard:
            for c in [c for c in r["ctxs"] if not c.get("isgold")][:per_question]:
                self.corpus.add(c["title"], c["text"], "nq hard negatives (wiki-18)", split=False)

    def add_random_wiki18(self) -> None:
        for r in self.read("raw/corpus/wiki18_random_sample1000_flashrag.jsonl"):
            title, _, text = r["contents"].partition("\n")
            self.corpus.add(title, text, "wiki-18 random sample", split=False)


def keep(rows: list[dict]) -> list[dict]:
    """A question stays in an answer-bearing set when a gold passage holds its answer (yes/no answers, which no
    passage spells out, stay when the gold passages are there)."""
    return [r for r in rows if r["metadata"]["answer_in_gold"]
            or (r["metadata"]["supporting_ids"] and normalize_answer(r["golden_answers"][0]) in YES_NO)]


def drop_questions(rows: list[dict], *others: list[dict]) -> list[dict]:
    seen = {qkey(r["question"]) for o in others for r in o}
    return [r for r in rows if qkey(r["question"]) not in seen]


def build(src: Path, out: Path) -> dict:
    b = Builder(src, out)
    full = b.full_splits()
    by_q = {name: {qkey(r["question"]): r["id"] for r in full[name]} for name in ("2wiki", "musique")}
    # gold passages first, so their ids are the low ones and every distractor that repeats one maps onto it
    nq_eval, nq_extra, nq_hard = b.nq(full["nq"])
    popqa = b.popqa()
    hotpot_dev = b.hotpot_dev_evidence()
    # PruneRAG's HotpotQA and MuSiQue questions are train-split ones (none is in the dev files; some are in other
    # train files), its 2Wiki questions dev ones
    hotpot_train_pr = b.multihop("hotpotqa", "train", {})
    two_wiki = b.multihop("2wiki", "dev", by_q["2wiki"])
    musique = b.multihop("musique", "train", by_q["musique"])
    hotpot_train_hr = b.hotpot_train_hipporag()
    bamboogle = b.bamboogle()
    # real distractors: what e5-base-v2 (the paper's retriever) returns over wiki-18 for the multi-hop questions,
    # Contriever's answer-free hard negatives of the NQ questions, a random wiki-18 sample
    for name in ("hotpotqa", "2wiki", "musique"):
        b.add_wiki18(f"{WP}/multihop/{name}_500_wiki18_e5_top3.jsonl", f"{name} e5 top-3 (wiki-18)")
    b.add_nq_negatives(nq_hard, NQ_NEGATIVES)
    b.add_random_wiki18()

    evals = {"nq_ctx": keep(nq_eval), "popqa_ctx": keep(popqa), "hotpotqa_ctx": keep(hotpot_dev),
             "2wiki_ctx": keep(two_wiki), "musique_ctx": keep(musique), "bamboogle": bamboogle}
    for name, rows in evals.items():
        b.write_qa(name, rows)
    every_eval = list(evals.values()) + [full["triviaqa"]]
    b.write_qa("nq_ctx_extra", drop_questions(keep(nq_extra), *every_eval))
    b.write_qa("hotpotqa_train_ctx", drop_questions(keep(hotpot_train_pr), *every_eval))
    b.write_qa("hotpotqa_train", drop_questions(keep(hotpot_train_hr), *every_eval))

    atomic_write_jsonl(out / "corpus" / "cpu_corpus.jsonl.gz", b.corpus.rows())
    atomic_write_json(out / "corpus" / "cpu_corpus.stats.json", b.corpus.stats())
    b.counts["cpu_corpus"] = len(b.corpus.passages)
    return b.counts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="../shared/data")
    ap.add_argument("--out", default="data")
    a = ap.parse_args(argv)
    for k, v in build(Path(a.src), Path(a.out)).items():
        print(f"{k:>20}: {v:,}")


if __name__ == "__main__":
    main()

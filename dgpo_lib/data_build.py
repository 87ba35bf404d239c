"""Convert the raw benchmark files (../shared/data) into the repo's FlashRAG-format `data/` folder.

Run once by a maintainer (`python -m dgpo_lib.data_build --src ../shared/data --out data`); the output is
committed, so users and CI never need the raw folder. Nothing here edits question or answer text.

Outputs
- `qa/<name>.jsonl`: FlashRAG QA schema `{"id", "question", "golden_answers", "metadata"}`.
  `*_ctx` sets and the training sets with context carry `metadata.supporting_titles` and
  `metadata.supporting_ids` (ids of their gold passages in the CPU corpus).
- `corpus/cpu_corpus.jsonl`: every real Wikipedia passage in the raw folder, de-duplicated, as
  `{"id", "contents": "\"Title\"\\ntext"}` (the wiki-18 layout Search-R1 reads).
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from .io_utils import atomic_write_jsonl

RAW_QA = {  # name -> (relative path, question field, answers field, id field or None)
    "nq": ("raw/nq/NQ-open.dev.jsonl", "question", "answer", None),
    "triviaqa": ("raw/triviaqa/triviaqa_dpr_test.jsonl", "question", "golden_answers", "id"),
    "popqa": ("raw/popqa/popqa_longtail_selfrag.jsonl", "question", "answers", "question_id"),
    "hotpotqa": ("raw/hotpotqa/hotpotqa_dev_distractor_qa.jsonl", "question", "golden_answers", "id"),
    "2wiki": ("raw/2wikimultihopqa/2wiki_dev_qa.jsonl", "question", "golden_answers", "id"),
    "musique": ("raw/musique/musique_ans_dev_qa.jsonl", "question", "golden_answers", "id"),
    "bamboogle": ("raw/bamboogle/bamboogle_test.jsonl", "question", "golden_answers", "id"),
    "nq_train": ("raw/nq/nq_dpr_dev_split_of_train.jsonl", "question", "golden_answers", "id"),
}


def _read(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _ws(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


class CorpusBuilder:
    """Collects (title, text) passages; de-duplicates exact repeats and passages contained in a longer one
    with the same title (HotpotQA gold-evidence sentences vs. the full paragraph)."""

    def __init__(self):
        self.by_title: dict[str, list[int]] = {}
        self.passages: list[list[str]] = []  # [title, text]

    def add(self, title: str, text: str) -> int:
        title, text = _ws(title), _ws(text)
        if not title or not text:
            raise ValueError(f"empty passage title/text: {title!r} {text[:40]!r}")
        for pid in self.by_title.get(title, []):
            old = self.passages[pid][1]
            if text in old:
                return pid
            if old in text:  # keep the longer paragraph under the same id
                self.passages[pid][1] = text
                return pid
        pid = len(self.passages)
        self.passages.append([title, text])
        self.by_title.setdefault(title, []).append(pid)
        return pid

    def rows(self) -> list[dict]:
        return [{"id": str(i), "contents": f'"{t}"\n{x}'} for i, (t, x) in enumerate(self.passages)]


def build(src: Path, out: Path) -> dict:
    src, out = Path(src), Path(out)
    corpus = CorpusBuilder()
    counts: dict[str, int] = {}

    def write_qa(name: str, rows: list[dict]):
        atomic_write_jsonl(out / "qa" / f"{name}.jsonl", rows)
        counts[name] = len(rows)

    # Plain QA sets (full test/dev splits, FlashRAG schema).
    for name, (rel, qf, af, idf) in RAW_QA.items():
        rows = []
        for i, r in enumerate(_read(src / rel)):
            ans = r[af] if isinstance(r[af], list) else [r[af]]
            rows.append({"id": str(r[idf]) if idf else str(i), "question": r[qf], "golden_answers": ans,
                         "metadata": {"source": rel}})
        write_qa(name, rows)

    def hotpot_with_context(rel: str) -> list[dict]:
        rows = []
        for r in _read(src / rel):
            ids_by_title = {t: corpus.add(t, "".join(sents)) for t, sents in r["context"]}
            titles = sorted({t for t, _ in r["supporting_facts"]})
            rows.append({"id": r["_id"], "question": r["question"], "golden_answers": [r["answer"]],
                         "metadata": {"source": rel, "type": r.get("type"), "level": r.get("level"),
                                      "supporting_titles": titles,
                                      "supporting_ids": [str(ids_by_title[t]) for t in titles if t in ids_by_title]}})
        return rows

    def musique_with_paragraphs(rel: str) -> list[dict]:
        rows = []
        for r in _read(src / rel):
            sup_titles, sup_ids = [], []
            for p in r["paragraphs"]:
                pid = corpus.add(p["title"], p["paragraph_text"])
                if p["is_supporting"]:
                    sup_titles.append(_ws(p["title"]))
                    sup_ids.append(str(pid))
            rows.append({"id": r["id"], "question": r["question"],
                         "golden_answers": [r["answer"]] + list(r.get("answer_aliases") or []),
                         "metadata": {"source": rel, "supporting_titles": sup_titles, "supporting_ids": sup_ids}})
        return rows

    # Multi-hop sets whose gold passages go into the CPU corpus.
    hp_dev = hotpot_with_context("raw/hotpotqa/hotpotqa_dev_distractor_first103_with_context.jsonl")
    seen = {r["question"] for r in hp_dev}
    for i, r in enumerate(_read(src / "raw/hotpotqa/hotpotqa_dev1000_gold_evidence_ecm.jsonl")):
        if r["question"] in seen:
            continue
        by_title: dict[str, list[str]] = {}
        for ev in r["evidence"]:
            title, _, sent = ev.partition(" | ")
            by_title.setdefault(title.strip(), []).append(sent.strip())
        ids = [str(corpus.add(t, " ".join(s))) for t, s in by_title.items()]
        hp_dev.append({"id": f"ecm-dev-{i}", "question": r["question"], "golden_answers": [r["answer"]],
                       "metadata": {"source": "raw/hotpotqa/hotpotqa_dev1000_gold_evidence_ecm.jsonl",
                                    "type": r.get("type"), "level": r.get("level"),
                                    "supporting_titles": sorted(by_title), "supporting_ids": ids}})
    write_qa("hotpotqa_ctx", hp_dev)
    write_qa("musique_ctx", musique_with_paragraphs("raw/musique/musique_ans_dev100_with_paragraphs_kag.jsonl"))
    write_qa("hotpotqa_train", hotpot_with_context("raw/hotpotqa/hotpotqa_train100_with_context_hipporag.jsonl"))
    write_qa("musique_train", musique_with_paragraphs("raw/musique/musique_train100_with_paragraphs_hipporag.jsonl"))

    # 2Wiki: HippoRAG's corpus + the heuristic list of dev questions it covers (not gold: see data README).
    wiki_ids = {}
    for r in _read(src / "raw/2wikimultihopqa/2wiki_hipporag1000_corpus.jsonl"):
        wiki_ids[str(r["id"])] = corpus.add(r["title"], r["text"])
    rows = []
    for r in _read(src / "derived/2wiki_dev_questions_covered_by_hipporag_corpus.jsonl"):
        ids = [str(wiki_ids[i]) for i in r["answer_passage_ids"] + r["matched_title_passage_ids"] if i in wiki_ids]
        rows.append({"id": str(r["id"]), "question": r["question"], "golden_answers": r["golden_answers"],
                     "metadata": {"source": "derived/2wiki_dev_questions_covered_by_hipporag_corpus.jsonl",
                                  "supporting_titles": [corpus.passages[int(i)][0] for i in dict.fromkeys(ids)],
                                  "supporting_ids": list(dict.fromkeys(ids)), "heuristic": True}})
    write_qa("2wiki_ctx", rows)

    # Generic wiki-18 passages as realistic distractors.
    for r in _read(src / "raw/corpus/wiki18_random_sample1000_flashrag.jsonl"):
        title, _, text = r["contents"].partition("\n")
        corpus.add(title.strip().strip('"'), text)

    atomic_write_jsonl(out / "corpus" / "cpu_corpus.jsonl", corpus.rows())
    counts["cpu_corpus"] = len(corpus.passages)
    return counts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="../shared/data")
    ap.add_argument("--out", default="data")
    a = ap.parse_args(argv)
    for k, v in build(Path(a.src), Path(a.out)).items():
        print(f"{k:>16}: {v:,}")


if __name__ == "__main__":
    main()

"""The data card: per question set, how many questions, whether the corpus holds their answers, and how often one
search with the raw question finds an answer-bearing passage in the top 3 (the retrieval chapter's table)."""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import pandas as pd

from dgpo_lib.data.corpus import has_answer
from dgpo_lib.data.loaders import Passage, QAExample, display_name
from dgpo_lib.env.reward import normalize_answer


class AnswerIndex:
    """Finds whether any corpus passage holds a normalised answer, without scanning the corpus per answer: an
    inverted index over normalised words narrows the candidates to passages holding the answer's rarest word."""

    def __init__(self, passages: Sequence[Passage]):
        self.texts = [f" {normalize_answer(p.text)} " for p in passages]
        self.postings: dict[str, set[int]] = defaultdict(set)
        for i, t in enumerate(self.texts):
            for w in set(t.split()):
                self.postings[w].add(i)

    def holds(self, answers: Sequence[str]) -> bool:
        for a in answers:
            words = normalize_answer(a).split()
            if not words:
                continue
            cands = min((self.postings.get(w, set()) for w in words), key=len)
            needle = f" {' '.join(words)} "
            if any(needle in self.texts[i] for i in cands):
                return True
        return False


def top3_answer_hit(retriever, questions: Sequence[QAExample], k: int = 3) -> list[bool]:
    """Does the top-k for the raw question hold a gold answer (the paper's "answer in retrieved passages")?"""
    hits = retriever.search([q.question for q in questions], k)
    return [any(has_answer(p.text, q.golden_answers) for p in ps) for q, ps in zip(questions, hits)]


def _share(xs: Sequence[bool]) -> float:
    return float(sum(xs) / len(xs)) if xs else float("nan")


# Where the training questions come from (their file names), for the card's rows.
TRAIN_POOLS = {"nq_ctx": "NQ test, outside the evaluation subset", "nq_ctx_extra": "NQ test, no hard negatives",
               "hotpotqa_ctx": "HotpotQA dev, outside the evaluation subset",
               "hotpotqa_train_ctx": "HotpotQA train (with e5 top-3)", "hotpotqa_train": "HotpotQA train (HippoRAG)"}


def card_groups(cfg) -> list[tuple[str, str, list[QAExample]]]:
    """(label, role, questions): each evaluation set, the training questions by source file, the validation
    slice."""
    from dgpo_lib.data.loaders import (
        load_eval_sets,
        load_train_questions,
        load_val_questions,
    )

    groups = [(display_name(n), "evaluation", qs) for n, qs in load_eval_sets(cfg).items()]
    by_file: dict[str, list[QAExample]] = defaultdict(list)
    for q in load_train_questions(cfg):
        by_file[q.dataset].append(q)
    groups += [(TRAIN_POOLS.get(f, f), "training", qs) for f, qs in by_file.items()]
    val = load_val_questions(cfg)
    if val:
        groups.append(("validation slice (NQ + HotpotQA)", "validation", val))
    return groups


def data_card(groups: Sequence[tuple[str, str, list[QAExample]]], passages: Sequence[Passage],
              retrievers: dict[str, object], k: int = 3) -> pd.DataFrame:
    """One row per question group. Columns: role, questions, answer in a gold passage, answer anywhere in the
    corpus, answer in the top-k of each retriever, and the paper's retrieval (e5-base-v2 top-3 over wiki-18,
    from the released retrieval files) where those exist for the group's questions."""
    index = AnswerIndex(passages)
    rows = []
    for label, role, qs in groups:
        row = {"set": label, "role": role, "questions": len(qs),
               "answer in gold passage": _share([bool(q.metadata.get("answer_in_gold")) for q in qs])
               if any("answer_in_gold" in q.metadata for q in qs) else float("nan"),
               "answer in corpus": _share([index.holds(q.golden_answers) for q in qs])}
        for rname, r in retrievers.items():
            row[f"top-{k}: {rname}"] = _share(top3_answer_hit(r, qs, k))
        e5 = [q.metadata["paper_e5_top3_has_answer"] for q in qs if "paper_e5_top3_has_answer" in q.metadata]
        row["top-3: paper (e5, wiki-18)"] = _share(e5) if len(e5) == len(qs) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)

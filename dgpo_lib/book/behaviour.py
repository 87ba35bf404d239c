"""How the models search: per question, searches, how well a query targets the gold titles, answer length and whether
the retrieved text held the answer."""
from __future__ import annotations

import re
from typing import Sequence

import pandas as pd

from dgpo_lib.data.loaders import display_name
from dgpo_lib.methods import row_label

_WORD = re.compile(r"\w+")


def query_title_overlap(query: str, titles: Sequence[str]) -> float:
    """Share of a gold title's words found in the query (best gold title): how well a query targets evidence."""
    q = {w.lower() for w in _WORD.findall(query)}
    best = 0.0
    for t in titles:
        tw = {w.lower() for w in _WORD.findall(t)}
        if tw:
            best = max(best, len(q & tw) / len(tw))
    return best


def behaviour_frame(records: dict[str, dict[str, list[dict]]], gold_titles: dict[str, dict[str, list[str]]]):
    """Per method and question: EM, searches, query/gold-title overlap, answer length, hit (a retrieved block holds an
    answer). Two search counts: `searches` = queries the environment executed (this project's), `search_tags` = the
    `<search>` tags in the response, which is what the DGPO authors count (`decoded.count('<search>') - 1` over prompt
    and response: the -1 removes the prompt's own tag, and each invalid-action message adds one, so invalid turns
    count as searches)."""
    rows = []
    for method, per_set in records.items():
        for ds, recs in per_set.items():
            for r in recs:
                titles = gold_titles.get(ds, {}).get(r["id"], [])
                ov = [query_title_overlap(q, titles) for q in r["queries"]] if titles else []
                rows.append({"method": row_label(method), "benchmark": display_name(ds), "em": r["em"],
                             "searches": r["n_searches"], "search_tags": r["response"].count("<search>"),
                             "query_title_overlap": max(ov) if ov else float("nan"),
                             "answer_words": len((r["answer"] or "").split()) if r["answer"] is not None
                             else float("nan"),
                             "answered": r["answer"] is not None, "hit": r["info_contains_answer"]})
    return pd.DataFrame(rows)


def reading_frame(beh: pd.DataFrame) -> pd.DataFrame:
    """Per method (rows of `behaviour_frame`): episodes, the share whose retrieved text held a gold answer, and EM
    among those (reading the answer out) and among the rest (knowing it without the evidence)."""
    def part(g: pd.DataFrame) -> pd.Series:
        hit = g["hit"].astype(bool)
        return pd.Series({"episodes": len(g), "answer retrieved": hit.mean(),
                          "EM when retrieved": g.loc[hit, "em"].mean() if hit.any() else float("nan"),
                          "EM when not retrieved": g.loc[~hit, "em"].mean() if (~hit).any() else float("nan")})
    return pd.DataFrame({m: part(g) for m, g in beh.groupby("method", sort=False)}).T

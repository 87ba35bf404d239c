"""A wiki-18-shaped corpus assembled from passages of several sources, and the answer-in-passage test.

wiki-18 (DPR's `psgs_w100`) cut every Wikipedia article into disjoint 100-word blocks and stores each as
`"Title"\\ntext`. Passages that arrive here longer than that (PopQA lead paragraphs, some MuSiQue and NQ gold
paragraphs) are cut the same way; wiki-18 passages themselves pass through unchanged. Sources give the same
passage different ids (wiki-18 row numbers, DPR ids, none), so duplicates are found on normalised text.
"""
from __future__ import annotations

import math
import re
from collections import Counter

from dgpo_lib.env.reward import normalize_answer

BLOCK_WORDS = 100   # wiki-18's block length
SPLIT_ABOVE = 120   # a paragraph up to this long stays whole rather than leaving a stub of a few words


def collapse_ws(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def split_words(text: str, block: int = BLOCK_WORDS, above: int = SPLIT_ABOVE) -> list[str]:
    """Cut `text` into ceil(words / block) near-equal consecutive blocks when it is longer than `above` words."""
    words = text.split()
    if len(words) <= above:
        return [" ".join(words)]
    n = math.ceil(len(words) / block)
    size = math.ceil(len(words) / n)
    return [" ".join(words[i:i + size]) for i in range(0, len(words), size)]


def has_answer(text: str, answers: list[str]) -> bool:
    """A normalised gold answer occurs in the normalised text as whole words (SQuAD normalisation, as EM)."""
    t = f" {normalize_answer(text)} "
    return any((a := normalize_answer(x)) and f" {a} " in t for x in answers)


class CorpusBuilder:
    """Collects (title, text) passages with their source. `add` returns the ids of the passage's blocks; a passage
    whose normalised text is already present, or that is contained in a longer passage of the same title (gold
    evidence sentences vs. their paragraph), gets the existing id instead of a new one."""

    def __init__(self):
        self.passages: list[list[str]] = []  # [title, text]
        self.by_key: dict[str, int] = {}
        self.by_title: dict[str, list[int]] = {}
        self.source_of: list[str] = []
        self.offered: Counter = Counter()  # blocks offered per source, new or not

    def add(self, title: str, text: str, source: str, split: bool = True) -> list[str]:
        title, text = collapse_ws(title).strip('"'), collapse_ws(text)
        if not title or not text:
            raise ValueError(f"{source}: empty passage title/text: {title!r} {text[:40]!r}")
        return [self._add_block(title, b, source) for b in (split_words(text) if split else [text])]

    def _add_block(self, title: str, text: str, source: str) -> str:
        self.offered[source] += 1
        key = normalize_answer(text)
        if key in self.by_key:
            return str(self.by_key[key])
        for pid in self.by_title.get(title, []):
            old = self.passages[pid][1]
            if text in old:
                return str(pid)
            if old in text:  # keep the longer text under the same id
                self.passages[pid][1] = text
                self.by_key[key] = pid
                return str(pid)
        pid = len(self.passages)
        self.passages.append([title, text])
        self.by_key[key] = pid
        self.by_title.setdefault(title, []).append(pid)
        self.source_of.append(source)
        return str(pid)

    def text(self, pid: str) -> str:
        return self.passages[int(pid)][1]

    def rows(self) -> list[dict]:
        return [{"id": str(i), "contents": f'"{t}"\n{x}'} for i, (t, x) in enumerate(self.passages)]

    def stats(self) -> dict:
        """Passages kept per source (the first source to bring a text owns it) and blocks offered per source."""
        return {"passages": len(self.passages), "kept_by_source": dict(Counter(self.source_of)),
                "offered_by_source": dict(self.offered)}

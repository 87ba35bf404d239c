"""Search-R1's answer normalisation (SQuAD style), exact match and token F1.

What is scored is the content of the `<answer>` action that ended the episode (`env/rollout.py`: the first
`<search>` or `<answer>` of a turn is its action, as Search-R1's `postprocess_predictions`), never text across
turns and never the worked example in the prompt, unlike Search-R1's decode-the-whole-sequence quirk.
"""
from __future__ import annotations

import re
import string
from collections import Counter

_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, drop articles a/an/the, collapse whitespace (Search-R1 `qa_em.py`)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction: str | None, golden_answers: list[str]) -> float:
    if prediction is None:
        return 0.0
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in golden_answers))


def f1_score(prediction: str | None, golden_answers: list[str]) -> float:
    """Max token-level F1 over the gold aliases (yes/no/noanswer must match exactly, as in HotpotQA)."""
    if prediction is None:
        return 0.0
    best = 0.0
    p = normalize_answer(prediction)
    for g in golden_answers:
        g = normalize_answer(g)
        if p in ("yes", "no", "noanswer") or g in ("yes", "no", "noanswer"):
            best = max(best, float(p == g))
            continue
        pt, gt = p.split(), g.split()
        common = Counter(pt) & Counter(gt)
        same = sum(common.values())
        if same == 0:
            continue
        prec, rec = same / len(pt), same / len(gt)
        best = max(best, 2 * prec * rec / (prec + rec))
    return best

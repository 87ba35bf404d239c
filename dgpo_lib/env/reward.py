"""Search-R1's answer normalisation (SQuAD style), exact match and token F1.

The answer is taken from the model's *response only* (the last `<answer>...</answer>`), so the worked
example in the prompt can never be scored, unlike Search-R1's decode-the-whole-sequence quirk.
"""
from __future__ import annotations

import re
import string
from collections import Counter

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, drop articles a/an/the, collapse whitespace (Search-R1 `qa_em.py`)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def extract_answer(response: str) -> str | None:
    """Last complete `<answer>...</answer>` in the response, stripped; None if there is none."""
    matches = _ANSWER_RE.findall(response)
    return matches[-1].strip() if matches else None


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


def em_reward(response: str, golden_answers: list[str]) -> float:
    """Outcome reward of a trajectory: EM of the extracted answer (0 when there is no answer)."""
    return exact_match(extract_answer(response), golden_answers)

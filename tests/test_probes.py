"""The probe of how much probability a model gives each kind of token of the teacher's text."""
import math

import torch

from dgpo_lib.train.batching import Seq, collate
from dgpo_lib.models.policy import action_logits
from dgpo_lib.evaluation.probes import KINDS, protocol_probabilities, token_kinds


def test_token_kinds_follow_tags_split_over_several_tokens():
    pieces = ["</", "think", ">\n", "<", "search", ">", " E", "iffel", " </", "search", ">", "<", "answer", ">",
              " Paris", " Tower", " </", "answer", ">"]
    kinds = token_kinds(pieces)
    assert kinds[3:6] == [("opens a search", 0)] * 3
    assert kinds[11:14] == [("opens the answer", 1)] * 3
    assert kinds[14:16] == [("answer words", -1)] * 2
    assert {k for k, _ in kinds[:3] + kinds[6:11] + kinds[16:]} == {"other tokens"}
    assert token_kinds(["<answer>", " Paris"]) == [("opens the answer", 0), ("answer words", -1)]  # never closed


def test_protocol_probabilities_score_whole_tags_and_average_the_other_tokens(tiny):
    model, tok = tiny
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]
    search, answer, end = (tok.convert_tokens_to_ids(t) for t in ("<search>", "<answer>", "</answer>"))
    query, info, words = ids(" paris tower"), ids(" info block"), ids(" paris")
    resp_a = [search] + query + info + [answer] + words + [end]
    mask_a = [1] * (1 + len(query)) + [0] * len(info) + [1] * (2 + len(words))
    resp_b = [answer] + ids(" france") + [end]
    seqs = [Seq(ids("Question: where"), resp_a, mask_a), Seq(ids("Question: which country"), resp_b, [1] * len(resp_b))]
    got = protocol_probabilities(model, tok, seqs, micro_batch=1)

    with torch.no_grad():
        logits, targets, counts = action_logits(model, collate([(s.prompt_ids, s.response_ids, s.action_mask)
                                                               for s in seqs], tok.pad_token_id))
    p = torch.softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    a, b = p.split(counts.tolist())  # a: <search> query <answer> words </answer>; b: <answer> words </answer>
    n_q, n_w = len(query), len(words)
    assert got["n opens a search"] == 1 and math.isclose(got["opens a search"], a[0].item(), rel_tol=1e-5)
    assert got["n opens the answer"] == 2
    assert math.isclose(got["opens the answer"], (a[1 + n_q].item() + b[0].item()) / 2, rel_tol=1e-5)
    answer_words = torch.cat([a[2 + n_q:2 + n_q + n_w], b[1:-1]])
    assert got["n answer words"] == len(answer_words)
    assert math.isclose(got["answer words"], answer_words.mean().item(), rel_tol=1e-5)
    others = torch.cat([a[1:1 + n_q], a[-1:], b[-1:]])  # retrieved tokens are never scored
    assert got["n other tokens"] == len(others) and math.isclose(got["other tokens"], others.mean().item(), rel_tol=1e-5)
    assert all(0 <= got[k] <= 1 for k in KINDS)

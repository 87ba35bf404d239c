"""A recorded episode played again through the real environment (`SearchEnv`): the model's turns are read from the
record instead of generated, the passages it retrieved are looked up by id, and the environment assembles the
token sequence and its action mask exactly as it did during the run. It shows, token by token, what a trainer
sees of an episode (which tokens are the model's actions, which the environment wrote) without the model's
weights or the search index."""
from __future__ import annotations

import re
from typing import Sequence

from dgpo_lib.data.loaders import Passage, QAExample
from dgpo_lib.env.prompts import INVALID_ACTION
from dgpo_lib.env.rollout import RolloutSettings, SearchEnv, Trajectory

_TURN_END = re.compile(r"</(search|answer)>")


class ReplayGenerator:
    """Generates, for a single episode, the next model turn of `response` (the record's full response text): the
    text from where the episode stands to the end of the next `</search>` or `</answer>`, as the environment's
    stop strings end a turn, or to the invalid-action message the environment wrote after a turn without one."""

    def __init__(self, response: str, prompt_len: int, tokenizer):
        self.response, self.prompt_len, self.tok = response, prompt_len, tokenizer

    def generate(self, contexts: Sequence[list[int]], max_new: int, temperature: float = 0.0, top_p: float = 1.0):
        out = []
        for ctx in contexts:
            so_far = self.tok.decode(ctx[self.prompt_len:], skip_special_tokens=False)
            if not self.response.startswith(so_far):
                raise ValueError("the replayed episode left its record: the environment wrote other text than the "
                                 f"record holds after {len(so_far)} characters (another rollout setting?)")
            rest = self.response[len(so_far):]
            m = _TURN_END.search(rest)
            end = m.end() if m else len(rest)
            invalid = rest.find(INVALID_ACTION)
            turn = rest[: invalid if 0 <= invalid < end else end]
            out.append(self.tok(turn, add_special_tokens=False).input_ids)
        return out


class ReplayRetriever:
    """Returns, search after search, the passages the record says were retrieved (its `retrieved_ids`)."""

    def __init__(self, retrieved_ids: Sequence[Sequence[str]], passages: dict[str, Passage]):
        self.calls = [list(ids) for ids in retrieved_ids]
        self.passages = passages

    def search(self, queries: Sequence[str], k: int = 3) -> list[list[Passage]]:
        out = []
        for _ in queries:
            if not self.calls:
                raise ValueError("the replayed episode left its record: it searched more often than the record "
                                 "did (another rollout setting?)")
            ids = self.calls.pop(0)
            missing = [i for i in ids if i not in self.passages]
            if missing:
                raise KeyError(f"passages {missing} of the record are not in the corpus given")
            out.append([self.passages[i] for i in ids[:k]])
        return out


def replay(record: dict, passages: dict[str, Passage], tokenizer, settings: RolloutSettings) -> Trajectory:
    """The record's episode (an evaluation or TGO record: question, golden answers, response, retrieved ids) played
    through `SearchEnv` with `settings` (those of the run that wrote it). Raises if the replay drifts from it."""
    q = QAExample(str(record["id"]), record["question"], list(record["golden_answers"]), record.get("dataset", ""))
    env = SearchEnv(None, ReplayRetriever(record.get("retrieved_ids") or [], passages), tokenizer, settings)
    env.gen = ReplayGenerator(record["response"], len(env.prompt_ids(q)), tokenizer)
    (tr,) = env.run([q])
    # the same text is not enough: with a shorter observation budget the model's turn would swallow the passage
    # text the environment no longer wrote; the record's token counts tell the two apart
    same = (tr.response_text == record["response"]
            and sum(tr.action_mask) == record.get("n_model_tokens", sum(tr.action_mask))
            and len(tr.response_ids) == record.get("n_response_tokens", len(tr.response_ids)))
    if not same:
        raise ValueError(f"record {record['id']}: the replayed episode left its record (its text or its token "
                         "counts differ: another rollout setting?)")
    return tr

"""The Search-R1 environment: batched multi-turn generation with retrieval, built token by token.

The sequence is assembled from token ids (the model's own ids, then the tokenised observation), never by
re-tokenising decoded text, so the action mask is exact: 1 on every token the model generated, 0 on the
prompt and on every token the environment wrote (`<information>` blocks, the invalid-action message).
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from dgpo_lib.data.loaders import QAExample
from dgpo_lib.env.prompts import INVALID_ACTION, build_prompt, information_block
from dgpo_lib.env.reward import exact_match, f1_score

log = logging.getLogger(__name__)

_ACTION_RE = re.compile(r"<(search|answer)>(.*?)</\1>", re.DOTALL)
_TAG_RE = re.compile(r"</?(think|search|answer|information)>")
MAX_QUERY_CHARS = 512


@dataclass
class Segment:
    kind: str  # "model", "information" or "invalid"
    text: str
    n_tokens: int


@dataclass
class Trajectory:
    question: QAExample
    prompt_ids: list[int]
    response_ids: list[int] = field(default_factory=list)
    action_mask: list[int] = field(default_factory=list)  # per response token: 1 generated, 0 environment
    segments: list[Segment] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    retrieved_ids: list[list[str]] = field(default_factory=list)
    n_turns: int = 0
    finish: str = ""  # answer | eos | max_turns | length
    answer: str | None = None  # the content of the <answer> action that ended the episode
    em: float = 0.0
    f1: float = 0.0

    @property
    def n_searches(self) -> int:
        return len(self.queries)

    @property
    def model_text(self) -> str:
        return "".join(s.text for s in self.segments if s.kind == "model")

    @property
    def response_text(self) -> str:
        return "".join(s.text for s in self.segments)

    def info_contains_answer(self) -> bool:
        """DGPO's hit ratio: a gold answer string occurs in a retrieved block (raw substring, as the code does)."""
        info = "".join(s.text for s in self.segments if s.kind == "information")
        return any(a in info for a in self.question.golden_answers)

    def to_record(self) -> dict:
        return {"id": self.question.id, "dataset": self.question.dataset, "question": self.question.question,
                "golden_answers": self.question.golden_answers, "answer": self.answer, "em": self.em,
                "f1": self.f1, "n_searches": self.n_searches, "queries": self.queries, "n_turns": self.n_turns,
                "finish": self.finish, "response": self.response_text,
                "n_model_tokens": int(sum(self.action_mask)), "n_response_tokens": len(self.response_ids),
                "info_contains_answer": self.info_contains_answer(), "retrieved_ids": self.retrieved_ids}


def information_ids(passages, tokenizer, max_tokens: int, mode: str = "block") -> list[int]:
    """The `<information>` block's token ids, at most `max_tokens` of them. A longer block is cut, as Search-R1's
    `max_obs_length` does (`block`: its closing tag is then lost, and a small model goes on writing passage text),
    or cut early enough to end with the closing tag (`closed`); both keep the same passage text first to last."""
    if mode not in ("block", "closed"):
        raise ValueError(f"rollout.obs_truncation must be 'block' or 'closed', got {mode!r}")
    encode = lambda text: tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    ids = encode(information_block(passages))
    if len(ids) <= max_tokens or mode == "block":
        return ids[:max_tokens]
    tail = encode(information_block([]).partition("<information>")[2])  # "</information>\n\n"
    return ids[: max_tokens - len(tail)] + tail if len(tail) < max_tokens else ids[:max_tokens]


def parse_action(text: str) -> tuple[str | None, str]:
    """Search-R1's `postprocess_predictions`: the first `<search>..</search>` or `<answer>..</answer>`."""
    m = _ACTION_RE.search(text)
    if not m:
        return None, ""
    return m.group(1), m.group(2).strip()


def clean_query(q: str) -> str:
    """Nested tags are removed and very long queries cut; an empty result means an invalid action."""
    return " ".join(_TAG_RE.sub(" ", q).split())[:MAX_QUERY_CHARS]


@dataclass
class RolloutSettings:
    max_turns: int = 4
    max_turn_tokens: int = 500
    max_obs_tokens: int = 500
    max_total_tokens: int = 4096
    obs_truncation: str = "block"
    topk: int = 3
    temperature: float = 0.0
    top_p: float = 1.0
    chat_template: bool = False
    few_shot: bool = False

    @classmethod
    def from_config(cls, cfg, greedy: bool) -> "RolloutSettings":
        r = cfg.rollout
        return cls(r.max_turns, r.max_turn_tokens, r.max_obs_tokens, r.max_total_tokens, r.obs_truncation,
                   cfg.retrieval.topk, 0.0 if greedy else r.temperature, r.top_p, cfg.models.chat_template,
                   cfg.models.few_shot)


class SearchEnv:
    """Runs Search-R1 episodes for a batch of questions with any generator and any retriever."""

    def __init__(self, generator, retriever, tokenizer, settings: RolloutSettings):
        self.gen, self.retriever, self.tok, self.s = generator, retriever, tokenizer, settings
        self.stats = {"retrieve_s": 0.0, "tokenize_s": 0.0, "searches": 0}

    def _encode(self, text: str) -> list[int]:
        t0 = time.perf_counter()
        ids = self.tok(text, add_special_tokens=False).input_ids
        self.stats["tokenize_s"] += time.perf_counter() - t0
        return ids

    def prompt_ids(self, q: QAExample) -> list[int]:
        return self._encode(build_prompt(q.question, self.tok, self.s.chat_template, self.s.few_shot))

    def _append(self, tr: Trajectory, ids: list[int], kind: str, text: str | None = None) -> None:
        if not ids:
            return
        tr.response_ids += ids
        tr.action_mask += [1 if kind == "model" else 0] * len(ids)
        tr.segments.append(Segment(kind, text if text is not None else
                                   self.tok.decode(ids, skip_special_tokens=False), len(ids)))

    def run(self, questions: Sequence[QAExample], slots: int | None = None,
            on_done: Callable | None = None) -> list[Trajectory]:
        """Every question's episode. A continuous generator keeps `slots` trajectories (default: all) in flight and
        calls `on_done(trajectory)` as each ends; any other generator runs them in lock step, turn by turn."""
        if hasattr(self.gen, "rollout"):
            return self.gen.rollout(self, questions, slots, on_done)
        s = self.s
        trajs = [Trajectory(q, self.prompt_ids(q)) for q in questions]
        done = [False] * len(trajs)
        # a generator with sessions (KVGenerator) keeps each row's KV cache from turn to turn
        session = self.gen.session() if hasattr(self.gen, "session") else None
        for turn in range(s.max_turns + 1):
            can_search = turn < s.max_turns
            active = []
            for i, tr in enumerate(trajs):
                if done[i]:
                    continue
                if len(tr.prompt_ids) + len(tr.response_ids) >= s.max_total_tokens:
                    done[i], tr.finish = True, "length"
                    continue
                active.append(i)
            if not active:
                break
            budgets = {i: self.turn_budget(trajs[i]) for i in active}
            contexts = [trajs[i].prompt_ids + trajs[i].response_ids for i in active]
            if session is not None:
                outs = session.generate(active, contexts, max(budgets.values()), s.temperature, s.top_p)
            else:
                outs = self.gen.generate(contexts, max(budgets.values()), s.temperature, s.top_p)
            pending: list[tuple[Trajectory, str]] = []
            for i, ids in zip(active, outs):
                finish, query = self.end_turn(trajs[i], ids[: budgets[i]], can_search)
                if finish:
                    done[i], trajs[i].finish = True, finish
                elif query:
                    pending.append((trajs[i], query))
            self.observe(pending)
        for i, tr in enumerate(trajs):
            if not done[i]:
                tr.finish = tr.finish or "max_turns"
            self.score(tr)
        return trajs

    # ---------------------------------------------------------------- one row's turn, shared with generation/continuous.py
    def turn_budget(self, tr: Trajectory) -> int:
        """New tokens the next turn may write; <= 0 means the trajectory is out of room."""
        return min(self.s.max_turn_tokens, self.s.max_total_tokens - len(tr.prompt_ids) - len(tr.response_ids))

    def end_turn(self, tr: Trajectory, ids: list[int], can_search: bool) -> tuple[str, str | None]:
        """Append the model's turn and decide what follows: (finish reason, "") when the episode ends, ("", query)
        for a search, ("", None) after the invalid-action message was appended."""
        s = self.s
        tr.n_turns += 1
        text = self.tok.decode(ids, skip_special_tokens=False)
        kind, content = parse_action(text)
        query = clean_query(content) if kind == "search" else ""
        ends_eos = bool(ids) and ids[-1] == self.tok.eos_token_id
        if ends_eos and can_search and kind != "answer" and not query:
            # Search-R1 decodes turns without special tokens, so a turn that stops at EOS with no action loses
            # its EOS and gets the invalid-action message like any other; the episode goes on while turns remain
            ids = ids[:-1]
            text = self.tok.decode(ids, skip_special_tokens=False)
            ends_eos = False
        self._append(tr, ids, "model", text)
        if kind == "answer":
            tr.answer = content  # the action that ends the episode is what is scored, never text across turns
            return "answer", ""
        if query and can_search:
            return "", query
        if kind == "search" and not can_search:
            return "max_turns", ""
        if ends_eos:
            return "eos", ""
        if len(tr.prompt_ids) + len(tr.response_ids) >= s.max_total_tokens:
            return "length", ""
        if not can_search:
            return "max_turns", ""
        # no action, an empty query, or an unterminated tag: Search-R1's corrective message
        self._append(tr, self._encode(INVALID_ACTION), "invalid", INVALID_ACTION)
        return "", None

    def observe(self, pending: Sequence[tuple[Trajectory, str]]) -> None:
        """Retrieve for every (trajectory, query) at once and append the `<information>` blocks."""
        if not pending:
            return
        s = self.s
        t0 = time.perf_counter()
        hits = self.retriever.search([q for _, q in pending], s.topk)
        self.stats["retrieve_s"] += time.perf_counter() - t0
        self.stats["searches"] += len(pending)
        for (tr, q), docs in zip(pending, hits):
            tr.queries.append(q)
            tr.retrieved_ids.append([p.id for p in docs])
            room = s.max_total_tokens - len(tr.prompt_ids) - len(tr.response_ids)
            t0 = time.perf_counter()
            obs = information_ids(docs, self.tok, max(0, min(s.max_obs_tokens, room)), s.obs_truncation)
            self.stats["tokenize_s"] += time.perf_counter() - t0
            self._append(tr, obs, "information")

    @staticmethod
    def score(tr: Trajectory) -> None:
        """EM and F1 of the answer action that ended the episode (`end_turn` sets it; None when none did)."""
        tr.em = exact_match(tr.answer, tr.question.golden_answers)
        tr.f1 = f1_score(tr.answer, tr.question.golden_answers)


def run_batched(env: SearchEnv, questions: Sequence[QAExample], batch_size: int, desc: str = "rollout",
                progress: bool = True) -> list[Trajectory]:
    """All questions' episodes, `batch_size` at a time (in flight at once, for a continuous generator), with a
    progress bar counting finished questions."""
    from tqdm import tqdm

    bar = tqdm(total=len(questions), desc=desc, unit="q", disable=not progress)
    if hasattr(env.gen, "rollout"):
        out = env.run(questions, slots=batch_size, on_done=lambda _: bar.update(1))
    else:
        out = []
        for s in range(0, len(questions), batch_size):
            out += env.run(questions[s:s + batch_size])
            bar.update(len(questions[s:s + batch_size]))
    bar.close()
    return out

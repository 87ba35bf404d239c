"""Teacher-generated outputs (TGO) and oracle trajectories, stored as `datasets` Datasets on disk.

TGO: the teacher runs the Search-R1 environment on the training questions; only its correct trajectories are
kept (the paper's cold-start data). Oracle trajectories: a scripted "teacher" that searches for the gold
supporting titles (or the question) and answers with the gold answer, through the very same environment, so
the retrieved passages are real; kept only when a retrieved passage contains the answer. They teach a small
pretrained model the protocol when no Search-R1 checkpoint exists (the `cpu` preset's teacher).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from dgpo_lib.data.loaders import QAExample
from dgpo_lib.env.rollout import SearchEnv, Trajectory
from dgpo_lib.io_utils import atomic_write_json, provenance
from dgpo_lib.train.batching import Seq

COLUMNS = ("id", "dataset", "question", "prompt_ids", "response_ids", "action_mask", "em", "n_searches", "answer",
           "response")


def trajectories_to_dataset(trajs: Sequence[Trajectory]):
    from datasets import Dataset

    rows = {c: [] for c in COLUMNS}
    for t in trajs:
        rec = {"id": t.question.id, "dataset": t.question.dataset, "question": t.question.question,
               "prompt_ids": t.prompt_ids, "response_ids": t.response_ids, "action_mask": t.action_mask,
               "em": t.em, "n_searches": t.n_searches, "answer": t.answer or "", "response": t.response_text}
        for c in COLUMNS:
            rows[c].append(rec[c])
    return Dataset.from_dict(rows)


def save_dataset(ds, out: Path, cfg=None, **info) -> None:
    """Write a dataset folder atomically (temp folder, then rename) with the config that made it."""
    from dgpo_lib.io_utils import atomic_dir

    with atomic_dir(out) as tmp:
        ds.save_to_disk(str(tmp))
        atomic_write_json(tmp / "made_by.json", provenance(cfg, **info, config=cfg.to_record() if cfg else None))


def val_dataset_dir(tgo_dir: Path) -> Path:
    """Where the TGO stage keeps the teacher's correct trajectories for the validation questions: no method trains on
    them; DistiLLM's held-out loss and the protocol probe read them."""
    return Path(tgo_dir) / "val_dataset"


def load_seqs(folder: Path) -> list[Seq]:
    from datasets import load_from_disk

    if not any(Path(folder).glob("*.arrow")):  # an empty dataset saves no shard
        return []
    ds = load_from_disk(str(folder))
    return [Seq(r["prompt_ids"], r["response_ids"], r["action_mask"]) for r in ds]


def seqs_of(trajs: Sequence[Trajectory]) -> list[Seq]:
    return [Seq(t.prompt_ids, t.response_ids, t.action_mask) for t in trajs]


class OracleGenerator:
    """Writes the oracle's turns as token ids: search each gold title (or the question), then answer."""

    def __init__(self, tokenizer, questions: Sequence[QAExample], max_searches: int = 2):
        self.tok = tokenizer
        self.plans: dict[str, list[str]] = {}
        for q in questions:
            titles = (q.metadata.get("supporting_titles") or [])[:max_searches] or [q.question.rstrip("?")]
            turns = [f"<think> I need {t}. </think>\n<search> {t} </search>" for t in titles]
            turns.append(f"<think> Found it. </think>\n<answer> {q.golden_answers[0]} </answer>")
            self.plans[q.question] = turns
        self.turn: dict[str, int] = {}

    def generate(self, contexts, max_new_tokens, temperature=0.0, top_p=1.0):
        out = []
        for ctx in contexts:
            text = self.tok.decode(ctx)
            # the latest matching question (longest first, so a question that is a prefix of another is safe)
            q = max((q for q in self.plans if q.strip().rstrip("?") in text), key=len)
            i = self.turn.get(q, 0)
            self.turn[q] = i + 1
            out.append(self.tok(self.plans[q][min(i, len(self.plans[q]) - 1)], add_special_tokens=False).input_ids)
        return out


def oracle_trajectories(env: SearchEnv, questions: Sequence[QAExample], batch_size: int = 32,
                        progress: bool = False) -> list[Trajectory]:
    """Run the oracle through `env` (its generator is replaced); keep correct, answer-grounded trajectories."""
    from tqdm import tqdm

    out = []
    with tqdm(total=len(questions), desc="oracle trajectories (searches)", unit="q", disable=not progress) as bar:
        for s in range(0, len(questions), batch_size):
            part = questions[s:s + batch_size]
            env.gen = OracleGenerator(env.tok, part)
            out += [t for t in env.run(part) if t.em == 1.0 and t.info_contains_answer()]
            bar.update(len(part))
            bar.set_postfix(kept=len(out))
    return out


def summarize(trajs: Sequence[Trajectory]) -> dict:
    n = max(len(trajs), 1)
    return {"n": len(trajs), "em": sum(t.em for t in trajs) / n,
            "searches": sum(t.n_searches for t in trajs) / n,
            "response_tokens": sum(len(t.response_ids) for t in trajs) / n,
            "model_tokens": sum(sum(t.action_mask) for t in trajs) / n}


def write_records(path: Path, trajs: Sequence[Trajectory]) -> None:
    from dgpo_lib.io_utils import atomic_write_jsonl
    atomic_write_jsonl(path, [t.to_record() for t in trajs])


def read_records(path: Path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]

"""One rejection-sampling round of the teacher (RFT, as in STaR and Yuan et al. 2023): the SFT teacher samples one
episode per training question at a temperature, and its correct episodes become the data of one more SFT epoch.
Unlike the oracle's scripted trajectories, these are the teacher's own searches and readings that reached the
answer.

The sampling is written in chunks as it goes, each with its own fixed seed, so a stopped stage resumes at its
first unwritten chunk and a resumed round samples what an unbroken one would.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from dgpo_lib.data.loaders import QAExample
from dgpo_lib.env.rollout import SearchEnv, run_batched
from dgpo_lib.io_utils import machine_share
from dgpo_lib.pauses import mark, working_s
from dgpo_lib.train.batching import Seq
from dgpo_lib.train.trajectories import load_seqs, save_dataset, summarize, trajectories_to_dataset

CHUNK_QUESTIONS = 256  # questions per written chunk: a stopped round loses at most one chunk's sampling


def chunk_seed(seed: int, round_: int, chunk: int) -> int:
    """The sampling seed of one chunk: a function of the run's seed, the round and the chunk only."""
    return seed * 1_000_003 + round_ * 10_007 + chunk


def sample_correct(env: SearchEnv, questions: Sequence[QAExample], folder: Path, seed: int, round_: int,
                   batch_size: int, cfg, progress: bool = True) -> tuple[list[Seq], dict]:
    """Sample an episode per question with `env` (which samples) and keep the correct ones (EM 1).

    Chunk i is written to `folder/chunk_<i>` (its kept episodes as a dataset; its `made_by.json` holds the chunk's
    summary and work time) and read back instead of sampled when it exists. Returns the kept sequences and the
    round's summary: the samples' EM, searches and tokens, how many were kept, and the work time of chunks an earlier
    process sampled (`earlier_work_s`, which the stage's record adds to its own)."""
    kept: list[Seq] = []
    parts, earlier = [], 0.0
    starts = range(0, len(questions), CHUNK_QUESTIONS)
    bar = tqdm(total=len(questions), desc=f"rejection sampling, round {round_}", unit="q", disable=not progress)
    for i, s in enumerate(starts):
        part = questions[s:s + CHUNK_QUESTIONS]
        out = folder / f"chunk_{i:04d}"
        if (out / "made_by.json").exists():  # sampled by an earlier process of this stage
            info = json.loads((out / "made_by.json").read_text())["chunk"]
            earlier += info["work_s"]
        else:
            t0 = mark()
            torch.manual_seed(chunk_seed(seed, round_, i))
            trajs = run_batched(env, part, batch_size, progress=False)
            correct = [t for t in trajs if t.em == 1.0]
            info = {**summarize(trajs), "kept": len(correct), "work_s": round(working_s(t0) * machine_share(), 1)}
            save_dataset(trajectories_to_dataset(correct), out, cfg, chunk=info)
        kept += load_seqs(out)
        parts.append(info)
        bar.update(len(part))
        bar.set_postfix(kept=len(kept))
    bar.close()
    n = sum(p["n"] for p in parts)
    mean = lambda k: round(sum(p[k] * p["n"] for p in parts) / max(n, 1), 4)  # noqa: E731
    summary = {"questions": n, "em": mean("em"), "searches": mean("searches"), "model_tokens": mean("model_tokens"),
               "kept": len(kept), "chunks": len(parts), "earlier_work_s": round(earlier, 1)}
    return kept, summary

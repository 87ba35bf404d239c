"""How much probability a model gives the teacher's own held-out text, by kind of token: the tag that opens a
search, the tag that opens the answer, the answer's words (copied from a retrieved passage), and everything else.

A student that never writes a tag at greedy decoding gives that tag little probability where the teacher writes
it; one that finds the answer but does not read it out gives the answer's words little probability although the
passage holding them is in its context."""
from __future__ import annotations

import json
import math
import re
from typing import Sequence

import torch

from dgpo_lib.models.policy import action_logits
from dgpo_lib.train.batching import Seq, collate_seqs, length_buckets

KINDS = ("opens a search", "opens the answer", "answer words", "other tokens")
TAG_KINDS = {"<search>": "opens a search", "<answer>": "opens the answer"}


def token_kinds(pieces: Sequence[str]) -> list[tuple[str, int]]:
    """(kind, occurrence) of each action token of one trajectory, from the tokens' texts in order. A tag may take
    several tokens (`<`, `search`, `>` in SmolLM2's vocabulary): every token that overlaps a `<search>` or
    `<answer>` tag is that tag's, numbered by occurrence; the tokens between `<answer>` and `</answer>` are answer
    words; the rest (`</answer>` included) are other tokens."""
    text = "".join(pieces)
    tags = [(m.start(), m.end(), TAG_KINDS[m.group()]) for m in re.finditer("<search>|<answer>", text)]
    words = []  # from the end of each <answer> to the next </answer> (or the end of the text)
    for m in re.finditer("<answer>", text):
        close = text.find("</answer>", m.end())
        words.append((m.end(), close if close >= 0 else len(text)))
    out, pos = [], 0
    for piece in pieces:
        a, b = pos, pos + len(piece)
        pos = b
        tag = next(((kind, i) for i, (s, e, kind) in enumerate(tags) if a < e and s < b), None)
        if tag is not None:
            out.append(tag)
        elif b > a and any(s <= a and b <= e for s, e in words):
            out.append(("answer words", -1))
        else:
            out.append(("other tokens", -1))
    return out


@torch.no_grad()
def protocol_probabilities(model, tokenizer, seqs: Sequence[Seq], micro_batch: int = 4) -> dict[str, float]:
    """How likely `model` finds the teacher's own text `seqs` (teacher trajectories; retrieved and prompt tokens
    are context, never scored): for each tag, the probability of the whole tag where the teacher wrote it (the
    product over its tokens), averaged over the tag's occurrences; for the answer words and the other tokens, the
    mean probability per token. `n <kind>` says how many occurrences or tokens were scored."""
    per_tag: dict[tuple[int, int], float] = {}  # (trajectory, occurrence) -> log-probability of the whole tag
    tag_kind: dict[tuple[int, int], str] = {}
    total = {k: 0.0 for k in KINDS}
    count = {k: 0 for k in KINDS}
    model.eval()
    for idx in length_buckets([s.length for s in seqs], micro_batch):
        b = collate_seqs([seqs[i] for i in idx], tokenizer.pad_token_id)
        logits, targets, counts = action_logits(model, b)
        lp = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1).cpu()
        for j, row_t, row_lp in zip(idx, targets.cpu().split(counts.tolist()), lp.split(counts.tolist())):
            pieces = [tokenizer.decode([t]) for t in row_t.tolist()]
            for (kind, occ), v in zip(token_kinds(pieces), row_lp.tolist()):
                if occ >= 0:
                    per_tag[(j, occ)] = per_tag.get((j, occ), 0.0) + v
                    tag_kind[(j, occ)] = kind
                else:
                    total[kind] += math.exp(v)
                    count[kind] += 1
    for key, v in per_tag.items():
        total[tag_kind[key]] += math.exp(v)
        count[tag_kind[key]] += 1
    out = {k: total[k] / count[k] if count[k] else float("nan") for k in KINDS}
    return {**out, **{f"n {k}": count[k] for k in KINDS}}


PROBE_FILE = "probe.json"  # in the folder of the stage that trained the row's model; kept with the results


def protocol_frame(run, rows: Sequence[str], n_seqs: int = 64):
    """`protocol_probabilities` of each row's model on the teacher's correct trajectories for the validation
    questions (the TGO stage keeps them apart; no method trains on them), a row per model. When the teacher solved
    no validation question, its training trajectories stand in (`attrs["source"]` says which).

    Each row's probe is kept in its stage's folder (`probe.json`, for this TGO stage and `n_seqs`), so it outlives
    the weights: a run restored from committed results shows the probes kept with them. A row with neither a kept
    probe nor its trained weights is left out and named in `attrs["missing"]`."""
    import pandas as pd

    from dgpo_lib.io_utils import atomic_write_json
    from dgpo_lib.pipeline.keys import row_stage

    inputs = {"tgo_key": run.stage_key("tgo"), "n_seqs": n_seqs}
    frame, missing, attrs, seqs = {}, [], {}, None
    for row in rows:
        file = run.stage_dir(row_stage(row)) / PROBE_FILE
        kept = json.loads(file.read_text()) if file.exists() else {}
        rec = kept.get(row)
        if rec is None or rec["inputs"] != inputs:
            if not _has_weights(run, row):
                missing.append(row)
                continue
            if seqs is None:
                seqs, source = _probe_seqs(run, n_seqs)
            model, tok = run.load(row)
            rec = {"inputs": inputs, "source": source, "n_trajectories": len(seqs),
                   "probabilities": protocol_probabilities(model, tok, seqs, run.cfg.train.micro_batch)}
            atomic_write_json(file, {**kept, row: rec})
        frame[row] = rec["probabilities"]
        attrs = {"n_trajectories": rec["n_trajectories"], "source": rec["source"]}
    df = pd.DataFrame(frame).T.reindex(columns=[*KINDS, *(f"n {k}" for k in KINDS)])
    df.attrs.update(n_trajectories=attrs.get("n_trajectories", 0), source=attrs.get("source", ""), missing=missing)
    return df


def _has_weights(run, row: str) -> bool:
    """Whether row's trained model is on this machine (a run restored from results has none)."""
    try:
        run.model_path(row)  # raises when the stage has not finished or its model folder is absent
    except FileNotFoundError:
        return False
    return True


def _probe_seqs(run, n_seqs: int):
    from dgpo_lib.train.trajectories import load_seqs, val_dataset_dir

    folder = run.stage_dir("tgo")
    seqs, source = load_seqs(val_dataset_dir(folder))[:n_seqs], "validation questions"
    if not seqs:
        seqs, source = load_seqs(folder / "dataset")[:n_seqs], "training questions"
    return seqs, source

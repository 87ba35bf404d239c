"""Which decoder layers a layer-pruned student keeps.

`spaced`: evenly spaced layers, first and last included (DistilBERT initialises its student from every other
teacher layer). `greedy`: drop, one at a time, the layer whose removal raises the next-token loss on calibration
passages least. On SmolLM2-135M cut to 15 of 30 layers the greedy student starts healing from a far lower loss than
the spaced one and reads better after the same healing (the figures are in results/experiments/README.md).

Works on any Qwen2/Llama-style causal LM whose decoder layers are `model.model.layers`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

RULES = ("spaced", "greedy")


def spaced_layers(n: int, keep_n: int) -> list[int]:
    """`keep_n` evenly spaced indices of `n` layers, first and last included."""
    _check_keep(n, keep_n)
    return sorted({round(i * (n - 1) / max(keep_n - 1, 1)) for i in range(keep_n)})


def _check_keep(n: int, keep_n: int) -> None:
    if not 1 <= keep_n <= n:
        raise ValueError(f"models.student_layers={keep_n} but the base model has {n} layers")


def token_batches(tok, texts: Sequence[str], seq_len: int, batch: int = 8) -> list[dict]:
    """Passages as right-padded token batches of at most `seq_len` tokens. Right padding: a causal model's real
    tokens never attend to the pads after them, so the loss equals that of each passage alone."""
    seqs = [ids for ids in (tok(t, add_special_tokens=False, truncation=True, max_length=seq_len)["input_ids"]
                            for t in texts) if len(ids) >= 2]
    out = []
    for a in range(0, len(seqs), batch):
        part = seqs[a:a + batch]
        width = max(len(s) for s in part)
        ids = torch.full((len(part), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(part), width), dtype=torch.long)
        for row, s in enumerate(part):
            ids[row, :len(s)] = torch.tensor(s)
            mask[row, :len(s)] = 1
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


@torch.no_grad()
def next_token_loss(model, batches: Sequence[dict]) -> float:
    """Mean next-token cross-entropy (nats per token) of `model` over `batches` (input_ids, attention_mask)."""
    dev = next(model.parameters()).device
    total, n = 0.0, 0
    for b in batches:
        ids, mask = b["input_ids"].to(dev), b["attention_mask"].to(dev)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
        scored = mask[:, 1:].bool()
        nll = torch.nn.functional.cross_entropy(logits[scored], ids[:, 1:][scored], reduction="sum")
        total += nll.item()
        n += int(scored.sum())
    return total / max(n, 1)


def use_layers(model, layers: Sequence[torch.nn.Module], layer_types: list | None, keep: Sequence[int]) -> None:
    """Make `model` run only `layers[keep]`, renumbered: KV-cache slots follow `layer_idx`, and the attention mask of
    layer i is looked up in `config.layer_types[i]`, so both must follow the new numbering."""
    model.model.layers = torch.nn.ModuleList([layers[i] for i in keep])
    for new_idx, layer in enumerate(model.model.layers):
        layer.self_attn.layer_idx = new_idx
    model.config.num_hidden_layers = len(keep)
    if layer_types:
        model.config.layer_types = [layer_types[i] for i in keep]


def greedy_layers(model, batches: Sequence[dict], keep_n: int, progress: bool = True,
                  rounds_file: Path | None = None, timing: dict | None = None) -> tuple[list[int], list[int], list[float]]:
    """Drop layers one per round until `keep_n` are left: each round tries removing each remaining layer and drops
    the one whose removal gives the lowest loss on `batches` (ties: the lower index). Returns (kept layers,
    sorted; layers in the order removed; the loss after each round). `model` is left unchanged.

    `rounds_file` keeps the finished rounds (the choice takes hours on a CPU): a call that finds it goes on from the
    round after the last one written, with the same result as one uninterrupted call. `timing`, a dict, receives
    each round's work time (`round_work_s`: seconds times `machine_share`) and how many rounds were read back."""
    from tqdm import tqdm

    from dgpo_lib.io_utils import atomic_write_json, machine_share
    from dgpo_lib.pauses import mark, working_s

    layers = list(model.model.layers)
    layer_types = list(getattr(model.config, "layer_types", None) or []) or None
    _check_keep(len(layers), keep_n)
    kept, removal_order, losses, round_work = list(range(len(layers))), [], [], []
    if rounds_file is not None and Path(rounds_file).exists():
        done = json.loads(Path(rounds_file).read_text())
        if done.get("layers") != len(layers) or done.get("keep_n") != keep_n:
            raise ValueError(f"{rounds_file}: rounds of a choice of {done.get('keep_n')} of {done.get('layers')} "
                             f"layers, not {keep_n} of {len(layers)}; delete it to choose again")
        removal_order, losses = list(done["removal_order"]), list(done["losses"])
        # each round's work time (its seconds times the process's share of the machine); None: not recorded
        round_work = list(done.get("round_work_s") or [None] * len(removal_order))
        kept = [i for i in kept if i not in removal_order]
    was_training = model.training
    model.eval()
    try:
        # the bar counts trial removals (n + (n-1) + ... + (keep_n+1) forward passes over the calibration batches),
        # so a round of many minutes on a CPU still moves it
        n = len(layers)
        bar = tqdm(total=sum(range(keep_n + 1, n + 1)), desc="greedy layer choice", unit="trial",
                   disable=not progress, initial=sum(range(len(kept) + 1, n + 1)))
        share = machine_share()
        resumed = len(removal_order)
        for round_no in range(len(removal_order), n - keep_n):
            t0, trial = mark(), {}
            for i in kept:
                use_layers(model, layers, layer_types, [j for j in kept if j != i])
                trial[i] = next_token_loss(model, batches)
                bar.update(1)
            drop = min(kept, key=lambda i: (trial[i], i))
            kept.remove(drop)
            removal_order.append(drop)
            losses.append(trial[drop])
            round_work.append(round(working_s(t0) * share, 1))
            if rounds_file is not None:
                atomic_write_json(Path(rounds_file), {"layers": n, "keep_n": keep_n, "removal_order": removal_order,
                                                      "losses": losses, "round_work_s": round_work})
            bar.set_postfix(round=f"{round_no + 1}/{n - keep_n}", dropped=drop, loss=f"{trial[drop]:.2f}")
        bar.close()
    finally:
        use_layers(model, layers, layer_types, range(len(layers)))
        model.train(was_training)
    if timing is not None:  # the rounds' work, and how many of them earlier processes did (a resumed choice)
        timing.update(round_work_s=round_work, rounds_resumed=resumed)
    return kept, removal_order, losses


@dataclass(frozen=True)
class LayerChoice:
    """How a pruned student's layers are chosen: the rule and, for greedy, its calibration passages."""
    rule: str = "spaced"
    texts: tuple[str, ...] = ()
    seq_len: int = 128

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"models.student_layer_choice = {self.rule!r}: expected one of {', '.join(RULES)}")
        if self.rule == "greedy" and not self.texts:
            raise ValueError("models.student_layer_choice = 'greedy' needs calibration passages "
                             "(models.layer_calib_passages >= 1 and a non-empty corpus)")

    def tag(self) -> str:
        """The part of a pruned model's folder name that says how its layers were chosen: a spaced and a greedy
        student never share a folder, nor two greedy ones calibrated on different passages."""
        if self.rule == "spaced":
            return "spaced"
        return f"greedy-c{len(self.texts)}x{self.seq_len}-{self.fingerprint()[:8]}"

    def fingerprint(self) -> str:
        """sha256 of the calibration passages, in order."""
        return hashlib.sha256("\0".join(self.texts).encode()).hexdigest()


def choose_layers(model, tok, keep_n: int, choice: LayerChoice, progress: bool = True,
                  rounds_file: Path | None = None) -> dict:
    """The layers to keep and how they were chosen, as recorded in the pruned model's dgpo_model.json. The greedy
    losses are float32 forward passes whatever `models.compute_dtype` says: the choice is cached per base model and
    passages, so it must not depend on the machine's precision."""
    n = len(model.model.layers)
    if choice.rule == "spaced":
        return {"kept_layers": spaced_layers(n, keep_n), "layer_choice": "spaced"}
    batches = token_batches(tok, choice.texts, choice.seq_len)
    timing = {}
    kept, order, losses = greedy_layers(model, batches, keep_n, progress, rounds_file, timing)
    return {"kept_layers": kept, "layer_choice": "greedy", "removal_order": order, "calibration_losses": losses,
            "calibration_round_work_s": timing["round_work_s"], "calibration_rounds_resumed": timing["rounds_resumed"],
            "calibration_loss_unpruned": next_token_loss(model, batches),
            "calibration_passages": len(choice.texts), "calibration_seq_len": choice.seq_len,
            "calibration_sha256": choice.fingerprint()}

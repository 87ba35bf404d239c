"""Forward passes that only pay for the tokens that matter, the critic, and LoRA wrapping.

`action_logits` asks the LM head for logits at the positions that predict a generated token only
(`logits_to_keep`), so a 49k vocabulary never materialises over prompt and retrieved tokens.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn

from dgpo_lib.models.precision import amp
from dgpo_lib.train.batching import Batch


def predict_positions(batch: Batch) -> torch.Tensor:
    """[B, T-1] bool: position j predicts token j+1, which the model generated."""
    return batch.action_mask[:, 1:].bool()


def action_logits(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits [N, V] (float32) at the N positions that predict an action token, rows in batch order,
    the target ids [N], and the per-row counts [B]."""
    pm = predict_positions(batch)
    keep = pm.any(0).nonzero().squeeze(1)
    dev = next(model.parameters()).device
    with amp(dev.type):
        out = model(input_ids=batch.input_ids.to(dev), attention_mask=batch.attention_mask.to(dev),
                    logits_to_keep=keep.to(dev), use_cache=False)
    sel = pm[:, keep].to(dev)
    targets = batch.input_ids[:, 1:][:, keep].to(dev)[sel]
    return out.logits[sel].float(), targets, pm.sum(1).to(dev)


def logprobs_and_entropy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lsm = torch.log_softmax(logits, -1)
    lp = lsm.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    ent = -(lsm.exp() * lsm).sum(-1)
    return lp, ent


class ValueModel(nn.Module):
    """Critic: the decoder of a causal LM plus a scalar head (veRL initialises it from the student checkpoint)."""

    def __init__(self, backbone: nn.Module, hidden: int, head_std: float = 1e-3):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(hidden, 1)
        nn.init.normal_(self.head.weight, std=head_std)  # rl.critic_head_std (verl: the model's initializer_range)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_causal_lm(cls, path: str, dtype=torch.float32, head_std: float = 1e-3) -> "ValueModel":
        from transformers import AutoModel
        backbone = AutoModel.from_pretrained(path, dtype=dtype)
        return cls(backbone, backbone.config.hidden_size, head_std)

    def forward(self, input_ids, attention_mask) -> torch.Tensor:
        with amp(input_ids.device.type):
            h = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return self.head(h.float()).squeeze(-1)


def action_values(critic, batch: Batch) -> torch.Tensor:
    """V(s) at every position that predicts an action token, flat [N] in batch order. Goes through the module's
    forward, so a DDP-wrapped critic syncs its gradients."""
    dev = next(critic.parameters()).device
    v = critic(batch.input_ids.to(dev), batch.attention_mask.to(dev))[:, :-1]
    return v[predict_positions(batch).to(dev)]


def add_lora(model: nn.Module, r: int, alpha: int) -> nn.Module:
    """LoRA adapters on the attention and MLP projections (peft)."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0,
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    return get_peft_model(model, cfg)


def save_policy(model, tokenizer, out: Path) -> None:
    """A loadable folder (LoRA merged in), so every stage hands the next one a plain checkpoint."""
    import copy

    from dgpo_lib.io_utils import atomic_dir

    m = copy.deepcopy(model).merge_and_unload() if hasattr(model, "merge_and_unload") else model
    with atomic_dir(out) as tmp:
        m.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "dgpo_model.json").write_text(json.dumps({"kind": "trained"}))

"""Healing a layer-pruned student: the pruned model is distilled from its unpruned base on plain text."""
from __future__ import annotations

import copy

import torch


def test_prune_then_heal_lowers_the_divergence_and_keeps_embeddings(smoke_cfg, tmp_path, corpus):
    from dgpo_lib.train.heal import heal_student
    from dgpo_lib.io_utils import read_jsonl_tolerant
    from dgpo_lib.models.loading import build_tiny_model, count_parameters, load_model, prune_layers

    base_dir = build_tiny_model(tmp_path / "base", layers=3, seed=1)
    pruned_dir = prune_layers(base_dir, tmp_path / "pruned", 2)
    base, tok = load_model(str(base_dir))
    student, _ = load_model(str(pruned_dir))
    assert student.config.num_hidden_layers == 2 and count_parameters(student) < count_parameters(base)
    emb_before = student.get_input_embeddings().weight.detach().clone()

    cfg = copy.deepcopy(smoke_cfg)
    cfg.models.heal_steps, cfg.models.heal_lr, cfg.models.heal_batch, cfg.models.heal_seq_len = 6, 2e-3, 4, 24
    texts = [p.contents for p in corpus[:4]]  # batch = all four texts: every step sees the same tokens
    info = heal_student(student, base, tok, texts, [p.contents for p in corpus[4:8]], cfg, tmp_path / "run",
                        tmp_path / "healed", progress=False)
    rows = read_jsonl_tolerant(tmp_path / "run" / "metrics.jsonl")
    assert len(rows) == 6 and rows[-1]["loss"] < rows[0]["loss"]
    assert torch.equal(student.get_input_embeddings().weight, emb_before)  # frozen: the base's vocabulary stays
    assert set(info) >= {"held_out_loss_before", "held_out_loss_after", "held_out_loss_base"}
    healed, _ = load_model(str(tmp_path / "healed"))
    assert healed.config.num_hidden_layers == 2


def test_text_loss_is_mean_token_cross_entropy(tiny):
    from dgpo_lib.train.heal import _batch, text_loss

    model, tok = tiny
    texts = ["alpha beta gamma delta", "one two three"]
    b = _batch(tok, texts, 16)
    with torch.no_grad():
        dev = next(model.parameters()).device
        logits = model(input_ids=b.input_ids.to(dev), attention_mask=b.attention_mask.to(dev)).logits.float().cpu()
    nll, n = 0.0, 0
    for i in range(len(texts)):
        ids = b.input_ids[i][b.attention_mask[i].bool()]
        lp = torch.log_softmax(logits[i][: len(ids) - 1], -1)
        nll += -lp[torch.arange(len(ids) - 1), ids[1:]].sum().item()
        n += len(ids) - 1
    assert abs(text_loss(model, tok, texts, 16) - nll / n) < 1e-4


def test_healing_text_never_holds_an_evaluation_gold_passage(smoke_cfg, tmp_path):
    import copy

    from dgpo_lib.data.loaders import load_cfg_corpus
    from dgpo_lib.pipeline import Run

    cfg = copy.deepcopy(smoke_cfg)
    cfg.run_root = str(tmp_path)
    run = Run(cfg, progress=False)
    texts, held_out, gold = run.resources.healing_texts()
    by_id = {p.id: p.contents for p in load_cfg_corpus(cfg)}
    assert gold and gold <= set(by_id)  # the smoke eval questions do have gold passages in the corpus
    used = set(texts) | set(held_out)
    assert not used & {by_id[i] for i in gold}
    assert len(held_out) == cfg.models.heal_held_out and not set(held_out) & set(texts)
    assert len(used) == len(by_id) - len(gold)

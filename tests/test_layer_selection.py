"""Which layers a pruned student keeps: the spaced rule, the greedy choice, the record and the pruned model."""
from __future__ import annotations

import json

import pytest
import torch

from dgpo_lib.models.layer_selection import (
    LayerChoice,
    greedy_layers,
    next_token_loss,
    spaced_layers,
    token_batches,
)
from dgpo_lib.models.loading import build_tiny_model, load_model, prune_layers

TEXTS = ["The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
         "Mount Everest is the highest mountain above sea level, in the Himalayas.",
         "The Nile is a major river in northeastern Africa flowing into the Mediterranean.",
         "Marie Curie was a physicist and chemist who researched radioactivity."]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("base") / "tiny", layers=4, seed=3)


@pytest.fixture
def base(base_dir):
    return load_model(str(base_dir))


def _identity_layer(model, i: int) -> None:
    """Zero the layer's two residual outputs: attention and MLP add nothing, the block is the identity."""
    layer = model.model.layers[i]
    with torch.no_grad():
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()


def test_spaced_layers_is_the_old_rule_first_and_last_kept():
    for n, k in [(30, 15), (30, 10), (30, 20), (4, 2), (5, 3), (7, 7), (6, 1)]:
        kept = spaced_layers(n, k)
        assert kept == sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)}) and len(kept) == k
        assert kept[0] == 0 and (k == 1 or kept[-1] == n - 1)
    assert spaced_layers(30, 15) == [0, 2, 4, 6, 8, 10, 12, 14, 17, 19, 21, 23, 25, 27, 29]  # the committed run's
    with pytest.raises(ValueError, match="models.student_layers"):
        spaced_layers(4, 5)


def _fit(model, batches, frozen_layer: int, steps: int = 40) -> None:
    """Fit the model to the batches with one layer frozen, so that every other layer matters (in a random model
    dropping a layer may as well lower the loss as raise it)."""
    params = [p for n, p in model.named_parameters() if not n.startswith(f"model.layers.{frozen_layer}.")]
    opt = torch.optim.Adam(params, lr=1e-2)
    torch.manual_seed(0)
    model.train()
    for _ in range(steps):
        for b in batches:
            opt.zero_grad()
            labels = b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)
            model(**b, labels=labels).loss.backward()
            opt.step()
    model.eval()


def test_greedy_first_removes_an_identity_layer_at_no_cost(base):
    model, tok = base
    batches = token_batches(tok, TEXTS, 24, batch=2)
    _identity_layer(model, 2)
    _fit(model, batches, frozen_layer=2)
    full = next_token_loss(model, batches)
    layers = list(model.model.layers)
    one_removed = {}
    for i in range(4):  # by hand: the loss of the model without layer i
        model.model.layers = torch.nn.ModuleList(layers[:i] + layers[i + 1:])
        model.config.num_hidden_layers = 3
        one_removed[i] = next_token_loss(model, batches)
    model.model.layers, model.config.num_hidden_layers = torch.nn.ModuleList(layers), 4
    assert abs(one_removed[2] - full) < 1e-5 and min(one_removed.values()) == one_removed[2]

    kept, order, losses = greedy_layers(model, batches, 2, progress=False)
    assert order[0] == 2 and losses[0] == pytest.approx(one_removed[2], abs=1e-6)
    assert kept == sorted(kept) and len(kept) == 2 and len(order) == len(losses) == 2
    assert set(kept) | set(order) == set(range(4)) and not set(kept) & set(order)
    assert len(model.model.layers) == 4 and model.config.num_hidden_layers == 4  # the model is left as it was
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1, 2, 3]
    assert next_token_loss(model, batches) == pytest.approx(full, abs=1e-6)


def test_next_token_loss_is_the_mean_over_real_tokens(base):
    model, tok = base
    batches = token_batches(tok, TEXTS, 24, batch=3)  # the second batch pads nothing, the first pads
    nll, n = 0.0, 0
    for t in TEXTS:
        ids = torch.tensor([tok(t, add_special_tokens=False, truncation=True, max_length=24)["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1]
        nll += torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
        n += ids.shape[1] - 1
    assert abs(next_token_loss(model, batches) - nll / n) < 1e-4


def test_greedy_prune_records_its_choice_and_runs_as_those_layers(base_dir, tmp_path):
    choice = LayerChoice("greedy", tuple(TEXTS), 24)
    out = prune_layers(base_dir, tmp_path / f"pruned-L2-{choice.tag()}", 2, choice, progress=False)
    record = json.loads((out / "dgpo_model.json").read_text())
    assert record["kind"] == "layer-pruned" and record["base"] == str(base_dir) and record["base_layers"] == 4
    assert record["layer_choice"] == "greedy" and len(record["kept_layers"]) == 2
    assert len(record["removal_order"]) == len(record["calibration_losses"]) == 2
    assert record["calibration_passages"] == 4 and record["calibration_seq_len"] == 24
    assert record["calibration_sha256"] == choice.fingerprint()

    base, tok = load_model(str(base_dir))
    kept_order, _, losses = greedy_layers(base, token_batches(tok, TEXTS, 24), 2, progress=False)
    assert record["kept_layers"] == kept_order and record["calibration_losses"] == pytest.approx(losses)

    pruned, _ = load_model(str(out))
    ids = torch.tensor([tok(TEXTS[0], add_special_tokens=False)["input_ids"]])
    with torch.no_grad():  # by hand: embeddings, the kept layers in order, the final norm, the tied head
        h = base.model.embed_tokens(ids)
        pos = torch.arange(ids.shape[1])[None]
        rope = base.model.rotary_emb(h, pos)
        causal = torch.full((ids.shape[1], ids.shape[1]), float("-inf")).triu(1)[None, None]
        for i in record["kept_layers"]:
            h = base.model.layers[i](h, attention_mask=causal, position_embeddings=rope, position_ids=pos)
            h = h[0] if isinstance(h, tuple) else h
        manual = base.lm_head(base.model.norm(h))
        assert torch.allclose(pruned(input_ids=ids).logits, manual, atol=1e-5)


def test_pruned_student_generates_the_same_with_and_without_the_kv_cache(base_dir, tmp_path):
    out = prune_layers(base_dir, tmp_path / "spaced", 2)
    assert json.loads((out / "dgpo_model.json").read_text())["kept_layers"] == [0, 3]
    model, tok = load_model(str(out))
    ids = torch.tensor([tok(TEXTS[1], add_special_tokens=False)["input_ids"]])
    gen = dict(max_new_tokens=6, do_sample=False, min_new_tokens=6, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        cached = model.generate(ids, attention_mask=torch.ones_like(ids), use_cache=True, **gen)
        uncached = model.generate(ids, attention_mask=torch.ones_like(ids), use_cache=False, **gen)
    assert cached.shape[1] == ids.shape[1] + 6 and torch.equal(cached, uncached)


def test_a_spaced_and_a_greedy_student_never_share_a_folder(tmp_path):
    from dgpo_lib.models.loading import pruned_folder_name

    greedy = LayerChoice("greedy", tuple(TEXTS), 128)
    names = {pruned_folder_name(tmp_path / "smollm2", 15, c) for c in
             (LayerChoice(), greedy, LayerChoice("greedy", tuple(TEXTS[:3]), 128), LayerChoice("greedy", tuple(TEXTS), 64))}
    assert len(names) == 4 and pruned_folder_name("smollm2", 15, LayerChoice()) == "smollm2-L15-spaced"
    assert pruned_folder_name("smollm2", 15, greedy).startswith("smollm2-L15-greedy-c4x128-")
    with pytest.raises(ValueError, match="student_layer_choice"):
        LayerChoice("best")
    with pytest.raises(ValueError, match="calibration passages"):
        LayerChoice("greedy")


def test_calibration_passages_are_healing_training_text_never_held_out(smoke_cfg):
    import copy

    from dgpo_lib.config import ConfigError, load_config
    from dgpo_lib.data.healing_text import healing_split, layer_calibration_texts
    from dgpo_lib.models.loading import student_layer_choice

    train, held_out, _ = healing_split(smoke_cfg)
    calib = layer_calibration_texts(smoke_cfg)
    assert calib == train[: smoke_cfg.models.layer_calib_passages] and not set(calib) & set(held_out)
    assert layer_calibration_texts(copy.deepcopy(smoke_cfg)) == calib  # a function of the config alone
    other_seed = copy.deepcopy(smoke_cfg)
    other_seed.seed += 1
    assert layer_calibration_texts(other_seed) != calib
    choice = student_layer_choice(smoke_cfg)
    assert choice.rule == "greedy" and choice.texts == tuple(calib) and choice.seq_len == smoke_cfg.models.heal_seq_len
    with pytest.raises(ConfigError, match="models.student_layer_choice"):
        load_config("smoke", ["models.student_layer_choice=best"])
    with pytest.raises(ConfigError, match="models.layer_calib_passages"):
        load_config("smoke", ["models.layer_calib_passages=0"])


def test_the_layer_choice_is_in_the_student_key(smoke_cfg):
    from dgpo_lib.config import load_config
    from dgpo_lib.pipeline import keys

    key = keys.stage_key(smoke_cfg, "student")
    for override in ("models.student_layer_choice=spaced", "models.layer_calib_passages=9"):
        assert keys.stage_key(load_config("smoke", [override]), "student") != key


def test_a_stopped_greedy_choice_goes_on_from_its_last_round(base, tmp_path):
    """The choice takes hours on a CPU: a process stopped after round one, then a new call, gives the same result
    as one uninterrupted call, without redoing round one."""
    import dgpo_lib.models.layer_selection as LS

    model, tok = base
    batches = token_batches(tok, TEXTS, 24, batch=2)
    whole = greedy_layers(model, batches, 1, progress=False)
    rounds = tmp_path / "rounds.json"
    calls = {"n": 0}
    real = LS.next_token_loss

    def stop_in_round_two(m, b):
        calls["n"] += 1
        if calls["n"] > 4:  # round one tries the 4 layers; stop in round two
            raise KeyboardInterrupt
        return real(m, b)

    LS.next_token_loss = stop_in_round_two
    try:
        with pytest.raises(KeyboardInterrupt):
            greedy_layers(model, batches, 1, progress=False, rounds_file=rounds)
    finally:
        LS.next_token_loss = real
    saved = json.loads(rounds.read_text())
    assert saved["removal_order"] == whole[1][:1] and len(model.model.layers) == 4
    assert len(saved["round_work_s"]) == 1 and saved["round_work_s"][0] >= 0  # each round's work time is kept
    calls["n"] = 0
    LS.next_token_loss = lambda m, b: (calls.__setitem__("n", calls["n"] + 1), real(m, b))[1]
    timing = {}
    try:
        resumed = greedy_layers(model, batches, 1, progress=False, rounds_file=rounds, timing=timing)
    finally:
        LS.next_token_loss = real
    assert resumed == whole and calls["n"] == 3 + 2  # rounds two and three only
    assert timing["rounds_resumed"] == 1 and timing["round_work_s"][0] == saved["round_work_s"][0]
    assert len(timing["round_work_s"]) == 3
    with pytest.raises(ValueError, match="delete it"):
        greedy_layers(model, batches, 2, progress=False, rounds_file=rounds)


def test_the_student_record_counts_the_layer_choice_it_made_with_the_rounds_earlier_processes_did(tmp_path):
    """The stage's work adds the rounds an earlier process finished, or the whole choice when an earlier process of
    the stage made it; a choice another process made (cached) adds nothing; untimed rounds are counted, not guessed."""
    import os

    from dgpo_lib.pipeline.stages import layer_choice_work
    from dgpo_lib.pipeline.records import StageRecords, work_s

    pruned, stage = tmp_path / "pruned", tmp_path / "student"
    pruned.mkdir(), stage.mkdir()
    made = {"written_at": 200.0, "written_by_pid": os.getpid(), "calibration_rounds_resumed": 2,
            "calibration_round_work_s": [30.0, None, 10.0, 5.0]}
    (pruned / "dgpo_model.json").write_text(json.dumps({**made, "written_by_pid": -1}))
    assert layer_choice_work(pruned, 100.0, stage) == {}  # another process's choice, cached
    (pruned / "dgpo_model.json").write_text(json.dumps(made))
    assert layer_choice_work(pruned, 300.0, stage) == {}  # made before this stage started
    got = layer_choice_work(pruned, 100.0, stage)
    assert got == {"layer_choice_work_s": 45.0, "earlier_work_outside_loop_s": 30.0, "layer_choice_untimed_rounds": 1}
    # the next process of the stage (stopped while healing, resumed) finds the choice made: all of it is earlier work
    (pruned / "dgpo_model.json").write_text(json.dumps({**made, "written_by_pid": -1}))
    assert layer_choice_work(pruned, 400.0, stage) == {"layer_choice_work_s": 45.0, "layer_choice_untimed_rounds": 1,
                                                       "earlier_work_outside_loop_s": 45.0}
    records = StageRecords(None, lambda name: tmp_path / name, tmp_path)
    import dgpo_lib.pipeline.records as rec
    real = rec.stage_key, rec.provenance
    rec.stage_key, rec.provenance = (lambda cfg, name: "k"), (lambda cfg, **kw: kw)
    try:
        records.cfg = type("C", (), {"to_record": lambda self: {}})()
        records.mark_done("student", started=0.0, **got)
    finally:
        rec.stage_key, rec.provenance = real
    done = json.loads((stage / "done.json").read_text())
    assert done["earlier_processes_work_s"] == 30.0 and "earlier_work_outside_loop_s" not in done
    assert work_s(done) == done["wall_s"] * done["machine_share"] + 30.0

"""The paper-scale page's settings table (value and source per setting) agrees with the paper preset."""
import re
from pathlib import Path

import pytest
import yaml

from dgpo_lib.config import load_config

PAGE = Path(__file__).resolve().parents[1] / "book" / "paper_scale.md"


def _rows():
    rows = re.findall(r"^\| `([\w.]+)` \| `([^`]*)`[^|]* \| ([^|]+) \|$", PAGE.read_text(), re.M)
    assert len(rows) > 40, "the settings table was not found"
    return rows


def test_every_row_matches_the_preset_and_names_a_source():
    cfg = load_config("paper")
    for key, shown, source in _rows():
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        assert value == yaml.safe_load(shown), f"{key}: the page says {shown}, the preset has {value!r}"
        assert source.strip(), f"{key} has no source"


def test_the_first_three_updates_warm_up_as_verl_does():
    """verl: warm = int(0.285 * 1000) = 285, factor min(1, s / warm): 0, 1/285, 2/285; ours (cpu/smoke): 1/285, ..."""
    import torch

    from dgpo_lib.train.loop import linear_warmup

    def first_lrs(from_zero):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-6)
        sched, lrs = linear_warmup(opt, 1000, 0.285, from_zero), []
        for _ in range(3):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return lrs
    assert first_lrs(True) == pytest.approx([0.0, 1e-6 / 285, 2e-6 / 285])
    assert first_lrs(False) == pytest.approx([1e-6 / 285, 2e-6 / 285, 3e-6 / 285])
    assert load_config("paper").rl.warmup_from_zero and not load_config("cpu").rl.warmup_from_zero


def test_two_unequal_micro_batches_are_reduced_as_verl_does():
    """Micro-batches of 3 and 1 action tokens: verl averages their means (1/2 each); the token mean weighs them by
    tokens (3/4, 1/4). verl cuts the mini-batch in order, in micro-batches of the same size."""
    import torch

    from dgpo_lib.train.rl import micro_batch_weights, micro_batches, mini_batch_order
    counts = torch.tensor([3, 1])
    assert micro_batch_weights(counts, "micro_batch_mean").tolist() == [0.5, 0.5]
    assert micro_batch_weights(counts, "token_mean").tolist() == [0.75, 0.25]
    assert micro_batches([5, 90, 7, 60, 8], 2, "micro_batch_mean") == [[0, 1], [2, 3], [4]]
    assert mini_batch_order(6, "0:rl:3", 0, shuffle=False) == list(range(6))
    assert sorted(mini_batch_order(6, "0:rl:3", 0, shuffle=True)) == list(range(6))
    paper = load_config("paper").rl
    assert paper.loss_reduction == "micro_batch_mean" and paper.shuffle_mini_batches is False


def test_the_critic_head_starts_at_the_std_the_preset_names(tmp_path):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from dgpo_lib.models.policy import ValueModel
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=512, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(tmp_path)
    for std in (0.02, 1e-3):
        head = ValueModel.from_causal_lm(str(tmp_path), head_std=std).head
        assert head.weight.std().item() == pytest.approx(std, rel=0.15) and not head.bias.any()
    assert load_config("paper").rl.critic_head_std == 0.02


def test_distillm_is_offered_in_both_skew_directions():
    from dgpo_lib.methods import METHODS
    assert METHODS["distillm"].kd.loss == "skew_reverse_kl" and METHODS["distillm_sfkl"].kd.loss == "skew_forward_kl"
    assert METHODS["distillm_sfkl"].kd.data == METHODS["distillm"].kd.data == "adaptive"


def test_prompts_come_epoch_by_epoch_as_verls_dataloader_gives_them():
    """verl: a shuffled DataLoader with drop_last, `train_batch_size` prompts per step: within an epoch no prompt
    repeats, and the left-over questions are dropped. The project's own order (cpu/smoke): a fresh sample each step."""
    import random

    from dgpo_lib.train.rl import step_prompts

    n, per = 10, 3  # 3 steps per epoch, one question left over each epoch
    epoch0 = [step_prompts(n, per, s, "0", "epochs") for s in range(3)]
    assert all(len(p) == per for p in epoch0)
    assert len({i for p in epoch0 for i in p}) == 9  # disjoint within the epoch
    epoch1 = [step_prompts(n, per, s, "0", "epochs") for s in range(3, 6)]
    assert len({i for p in epoch1 for i in p}) == 9 and epoch1 != epoch0  # a new permutation each epoch
    assert step_prompts(n, per, 4, "0", "epochs") == epoch1[1]  # a function of the step: a resumed run agrees
    # the project's order is what it always was: the step's own seeded sample
    assert step_prompts(n, per, 7, "0", "sample") == random.Random("0:rl:7").sample(range(n), per)
    assert load_config("paper").rl.prompt_order == "epochs" and load_config("cpu").rl.prompt_order == "sample"
    with pytest.raises(ValueError, match="prompt order"):
        step_prompts(n, per, 0, "0", "nope")


def test_the_critic_reduces_over_its_own_micro_batches():
    """`rl.critic_micro_batch` splits the critic's loss apart from the actor's: with micro_batch_mean its gradient
    is the mean of its own micro-batches' means (verl: 4 critic micro-batches of 8 beside 2 actor ones of 16)."""
    from dgpo_lib.train.rl import micro_batch_weights, micro_batches

    lengths = [5] * 32
    actor = micro_batches(lengths, 16, "micro_batch_mean")
    critic = micro_batches(lengths, 8, "micro_batch_mean")
    assert [len(p) for p in actor] == [16, 16] and [len(p) for p in critic] == [8, 8, 8, 8]
    import torch
    assert micro_batch_weights(torch.tensor([3.0, 9.0, 4.0, 4.0]), "micro_batch_mean").tolist() == [0.25] * 4
    assert load_config("paper").rl.critic_micro_batch == 8 and load_config("cpu").rl.critic_micro_batch is None

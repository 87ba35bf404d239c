import pytest
import torch

from dgpo_lib.train import rl_math as R


def test_dgpo_penalty_zero_on_correct_and_formula_on_wrong():
    scores = torch.tensor([1.0, 0.0])
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -3.0, 0.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-2.0, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    beta = 0.001
    r, k1 = R.token_rewards(scores, logp, ref, mask, beta, "selective")
    # correct trajectory: the EM reward on its last token, no KL term at all
    assert r[0].tolist() == [0.0, 0.0, 1.0]
    # wrong trajectory: r_t = -beta * (log pi - log pi_teacher) on its own tokens, 0 on padding
    assert r[1].tolist() == pytest.approx([-beta * 1.0, -beta * -2.0, 0.0])
    assert k1[1, :2].tolist() == [1.0, -2.0]
    r_all, _ = R.token_rewards(scores, logp, ref, mask, beta, "always")
    assert r_all[0].tolist() == pytest.approx([-beta * 0.5, -beta * -1.0, 1.0])
    r_none, _ = R.token_rewards(scores, logp, ref, mask, beta, "none")
    assert r_none[1].abs().sum() == 0


def test_gae_gamma_lambda_one_is_return_to_go_minus_value():
    r = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    v = torch.tensor([[0.2, 0.5, 0.7, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    adv, ret = R.gae(r, v, mask, 1.0, 1.0)
    assert adv[0, :3].tolist() == pytest.approx([0.8, 0.5, 0.3])
    assert ret[0, :3].tolist() == pytest.approx([1.0, 1.0, 1.0]) and adv[0, 3] == 0


def test_gae_with_discount_by_hand():
    r = torch.tensor([[0.5, 1.0]])
    v = torch.tensor([[0.1, 0.4]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    adv, _ = R.gae(r, v, mask, 0.9, 0.8)
    d1 = 1.0 - 0.4
    d0 = 0.5 + 0.9 * 0.4 - 0.1
    assert adv[0].tolist() == pytest.approx([d0 + 0.9 * 0.8 * d1, d1])


def test_ppo_clip_and_value_clip():
    old = torch.log(torch.tensor([[0.5, 0.5]]))
    new = torch.log(torch.tensor([[0.9, 0.3]]))  # ratios 1.8 and 0.6
    adv = torch.tensor([[1.0, -1.0]])
    m = torch.ones(1, 2, dtype=torch.bool)
    loss, cf, _ = R.ppo_policy_loss(new, old, adv, m, 0.2)
    assert float(loss) == pytest.approx((-1.2 + 0.8) / 2) and float(cf) == 1.0
    vl, vcf = R.value_loss(torch.tensor([[2.0]]), torch.tensor([[0.0]]), torch.tensor([[1.0]]),
                           torch.ones(1, 1, dtype=torch.bool), 0.5)
    assert float(vl) == pytest.approx(0.5 * max(1.0, 0.25)) and float(vcf) == 0.0


def test_grpo_advantages_as_verl():
    adv = R.grpo_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.tensor([0, 0, 1, 1]))
    assert adv[:2].tolist() == pytest.approx([0.7071, -0.7071], abs=1e-3) and adv[2:].abs().sum() == 0
    # a group of one keeps its score (verl: mean 0, std 1)
    assert R.grpo_advantages(torch.tensor([0.5]), torch.tensor([0])).tolist() == pytest.approx([0.5], abs=1e-5)


def test_grpo_outcome_is_the_summed_gated_reward():
    """The authors' GRPO path: token rewards carry the gated k1 KL, the group sees their sum."""
    scores = torch.tensor([1.0, 0.0, 0.0])
    logp = torch.tensor([[-1.0, -1.0], [-1.0, -2.0], [-0.5, -0.5]])
    ref = torch.tensor([[-2.0, -2.0], [-3.0, -3.0], [-1.5, -0.5]])
    mask = torch.ones(3, 2, dtype=torch.bool)
    r, _ = R.token_rewards(scores, logp, ref, mask, beta=0.1, kl_mode="selective")
    # correct: EM alone; wrong ones: -0.1 * (2 + 1) and -0.1 * (1 + 0)
    summed = torch.tensor([1.0, -0.3, -0.1])
    assert r.sum(1).tolist() == pytest.approx(summed.tolist())
    adv = R.grpo_advantages(r.sum(1), torch.tensor([0, 0, 0]))
    assert adv.tolist() == pytest.approx(((summed - summed.mean()) / (summed.std() + 1e-6)).tolist(), abs=1e-5)


def test_every_process_gets_an_equal_share_of_prompts():
    from dgpo_lib.train.rl import prompts_per_step
    assert prompts_per_step(102, 5000, 8) == 104       # the paper preset's GRPO ablation on 8 GPUs
    assert prompts_per_step(5, 100, 2) == 6 and prompts_per_step(4, 100, 2) == 4
    assert prompts_per_step(32, 7, 2) == 6              # capped by the questions there are
    assert prompts_per_step(0, 10, 1) == 1
    with pytest.raises(ValueError, match="cannot be shared"):
        prompts_per_step(4, 1, 2)

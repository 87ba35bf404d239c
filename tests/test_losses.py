"""Each loss against a value computed by hand (plain Python math) on a 2-position x 3-word example."""
import math

import pytest
import torch

from dgpo_lib.train import losses

S = [[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]]  # student logits, 2 positions x 3 words
T = [[2.0, 0.0, 1.0], [0.5, 0.5, -0.5]]  # teacher logits


def softmax(z):
    e = [math.exp(x) for x in z]
    return [x / sum(e) for x in e]


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def mix(p, q, w):
    return [w * a + (1 - w) * b for a, b in zip(p, q)]


def by_hand(name, s, t):
    ps, pt = softmax(s), softmax(t)
    if name == "fkl":
        return kl(pt, ps)
    if name == "rkl":
        return kl(ps, pt)
    if name == "jsd":  # beta = 0.1
        m = mix(pt, ps, 0.1)
        return 0.1 * kl(pt, m) + 0.9 * kl(ps, m)
    if name == "sfkl":  # alpha = 0.1
        return kl(pt, mix(pt, ps, 0.1))
    if name == "srkl":
        return kl(ps, mix(pt, ps, 0.9))
    if name == "taid":  # t = 0.4
        target = softmax([0.6 * a + 0.4 * b for a, b in zip(s, t)])
        return kl(target, ps)


def masked_loss(fn, s, t, mask):
    """Mean of a per-token loss over the positions where `mask` is 1 (as the trainers select action positions)."""
    m = mask.bool()
    return fn(s[m], t[m]).mean()


FNS = {"fkl": losses.forward_kl, "rkl": losses.reverse_kl,
       "jsd": lambda s, t: losses.generalized_jsd(s, t, 0.1),
       "sfkl": lambda s, t: losses.skew_forward_kl(s, t, 0.1),
       "srkl": lambda s, t: losses.skew_reverse_kl(s, t, 0.1),
       "taid": lambda s, t: losses.taid_loss(s, t, 0.4)}


@pytest.mark.parametrize("name", list(FNS))
def test_loss_matches_hand_computation(name):
    got = FNS[name](torch.tensor(S), torch.tensor(T))
    want = [by_hand(name, s, t) for s, t in zip(S, T)]
    assert got.tolist() == pytest.approx(want, rel=1e-5, abs=1e-7)
    # the mean over the masked positions only
    m = torch.tensor([[1, 0]])
    assert float(masked_loss(FNS[name], torch.tensor([S]), torch.tensor([T]), m)) == pytest.approx(want[0],
                                                                                                          rel=1e-5)


def test_nll_by_hand():
    got = losses.token_nll(torch.tensor(S), torch.tensor([1, 2]))
    want = [-math.log(softmax(S[0])[1]), -math.log(softmax(S[1])[2])]
    assert got.tolist() == pytest.approx(want, rel=1e-6)


def test_identical_distributions_give_zero():
    x = torch.tensor(S)
    for name, fn in FNS.items():
        if name != "taid":
            assert fn(x, x).abs().max() < 1e-6, name
    assert losses.taid_loss(x, x, 0.7).abs().max() < 1e-6


@pytest.mark.parametrize("name", list(FNS))
def test_masked_positions_get_zero_gradient(name):
    s = torch.tensor([S], requires_grad=True)
    loss = masked_loss(FNS[name], s, torch.tensor([T]), torch.tensor([[1, 0]]))
    loss.backward()
    assert s.grad[0, 1].abs().max() == 0  # retrieved/prompt position: nothing flows back
    assert s.grad[0, 0].abs().max() > 0


def test_gjsd_endpoints_are_the_kls():
    s, t = torch.tensor(S), torch.tensor(T)
    assert torch.allclose(losses.generalized_jsd(s, t, 0.0), losses.forward_kl(s, t))
    assert torch.allclose(losses.generalized_jsd(s, t, 1.0), losses.reverse_kl(s, t))


def test_taid_schedule_rises_monotonically_to_end():
    sch = losses.TAIDSchedule(0.4, 1.0, 5e-4, 0.99, total_steps=10)
    ts = [sch.update(step, loss) for step, loss in enumerate([5, 4, 3.5, 3.4, 3.0, 2.9, 2.8, 2.7, 2.6, 2.5, 2.5])]
    assert all(b >= a for a, b in zip(ts, ts[1:])) and ts[-1] == 1.0


def test_taid_schedule_matches_sakana_update_t():
    """SakanaAI/TAID `update_t(loss, global_step, num_train_steps)`: the first call only stores the loss; later
    calls use the current step's index for the linear target and sigmoid(momentum) for the adaptive step."""
    import math
    sch = losses.TAIDSchedule(0.4, 1.0, 0.1, 0.9, total_steps=100)
    assert sch.update(0, 2.0) == 0.4 and sch.m == 0.0                  # first call: t unchanged
    m = 0.1 * (2.0 - 1.0) / 2.0                                        # (1 - beta) * relative change
    want = max(0.4 + 0.6 * 1 / 100, 0.4 + 0.1 / (1 + math.exp(-m)) * 0.6)
    assert sch.update(1, 1.0) == pytest.approx(want)


@pytest.mark.parametrize("name", ["forward_kl", "generalized_jsd", "skew_reverse_kl", "taid"])
def test_chunked_kd_loss_gives_the_same_loss_and_gradient(name):
    import torch
    from dgpo_lib.train import losses
    from dgpo_lib.train.losses import chunked_loss_backward
    torch.manual_seed(0)
    fns = {"forward_kl": losses.forward_kl, "generalized_jsd": lambda s, t: losses.generalized_jsd(s, t, 0.1),
           "skew_reverse_kl": lambda s, t: losses.skew_reverse_kl(s, t, 0.1),
           "taid": lambda s, t: losses.taid_loss(s, t, 0.6)}
    per_token = lambda s, t, tg: fns[name](s, t)
    x, w = torch.randn(11, 5), torch.randn(5, 7)
    t_logits, targets = torch.randn(11, 7), torch.randint(0, 7, (11,))
    grads, values = [], []
    for chunk in (3, 10 ** 6):
        lin = torch.nn.Parameter(w.clone())
        values.append(chunked_loss_backward(x @ lin, per_token, t_logits, targets, 11, True, chunk=chunk))
        grads.append(lin.grad.clone())
    assert values[0] == pytest.approx(values[1], rel=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    assert grads[0].abs().sum() > 0


def test_pull_on_a_token_the_student_never_writes():
    """Forward KL's logit gradient at the teacher's token is p_S - p_T by hand; the bounded divergences pull with a
    fraction of it that shrinks with the student's probability (the calibration note's figures, recomputed)."""
    from dgpo_lib.train.loss_pull import pull, relative_pull

    assert pull(losses.forward_kl, 0.01, teacher_p=0.98) == pytest.approx(0.98 - 0.01, rel=1e-3)  # float32 inside
    rel = relative_pull({"kd": losses.forward_kl,
                         "distillm": lambda s, t: losses.skew_reverse_kl(s, t, 0.1),
                         "gkd": lambda s, t: losses.generalized_jsd(s, t, 0.1)}, [0.1, 0.01, 0.001])
    assert rel["kd"] == {0.1: 1.0, 0.01: 1.0, 0.001: 1.0}
    assert rel["distillm"][0.1] == pytest.approx(0.36, abs=0.01) and rel["distillm"][0.001] == pytest.approx(0.0082, abs=5e-4)
    assert rel["gkd"][0.1] == pytest.approx(0.068, abs=0.002) and rel["gkd"][0.001] == pytest.approx(0.0043, abs=3e-4)
    for name in ("distillm", "gkd"):  # weaker and weaker as the student's probability falls
        assert rel[name][0.1] > rel[name][0.01] > rel[name][0.001]

"""Every trainer runs on the smoke preset, changes what it should, and resumes exactly after an interruption."""
import copy

import pytest
import torch

from dgpo_lib.methods import KD_ROWS, METHODS
from dgpo_lib.train import kd, rl
from dgpo_lib.train.budget import kd_budget, rl_budget
from dgpo_lib.train.phase_clock import RL_PHASES
from dgpo_lib.train.batching import Seq
from dgpo_lib.data.loaders import load_train_questions
from dgpo_lib.io_utils import seed_everything
from dgpo_lib.models.loading import load_model
from dgpo_lib.models.policy import ValueModel
from dgpo_lib.generation.hf import HFGenerator
from dgpo_lib.env.rollout import RolloutSettings, SearchEnv
from dgpo_lib.train.trajectories import OracleGenerator, seqs_of


@pytest.fixture(scope="module")
def questions(smoke_cfg):
    return load_train_questions(smoke_cfg)


@pytest.fixture(scope="module")
def kd_data(smoke_cfg, tiny, dense, questions):
    _, tok = tiny
    env = SearchEnv(OracleGenerator(tok, questions), dense, tok, RolloutSettings.from_config(smoke_cfg, True))
    return seqs_of(env.run(questions[:8]))


def _fresh(smoke_cfg):
    from dgpo_lib.models.loading import load_role
    seed_everything(smoke_cfg.seed)
    return load_role(smoke_cfg, "student")


def _rollout_fn(smoke_cfg, dense):
    def make(actor, qs):
        tok = make.tok
        env = SearchEnv(HFGenerator(actor, tok), dense, tok, RolloutSettings.from_config(smoke_cfg, greedy=False))
        return env.run(qs)
    return make


def _params(m):
    return {k: v.detach().clone() for k, v in m.named_parameters()}


def _changed(before, model):
    return any(not torch.equal(before[k], v) for k, v in model.named_parameters() if k in before)


@pytest.mark.parametrize("method", KD_ROWS)
def test_every_kd_method_runs_two_steps_and_learns(method, smoke_cfg, tiny_teacher, kd_data, dense, questions,
                                                   tmp_path):
    student, tok = _fresh(smoke_cfg)
    teacher, _ = tiny_teacher
    before = _params(student)

    def student_rollout(step, n):
        env = SearchEnv(HFGenerator(student, tok), dense, tok, RolloutSettings.from_config(smoke_cfg, False))
        return seqs_of(env.run(questions[:n]))

    cfg = copy.deepcopy(smoke_cfg)
    cfg.kd.gkd_lambda = 1.0 if method == "gkd" else cfg.kd.gkd_lambda  # exercise the on-policy branch
    rows = kd.train_kd(METHODS[method].kd, student, tok, teacher, kd_data, cfg, kd_budget(cfg), tmp_path / method,
                       student_rollout=student_rollout, progress=False, out_dir=tmp_path / "out",
                       held_out=kd_data[:2])
    assert [r["step"] for r in rows] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) and r["loss"] > 0 for r in rows)
    assert _changed(before, student)
    assert (tmp_path / "out" / "model.safetensors").exists()
    if method == "gkd":
        assert all(r["on_policy"] == 1.0 for r in rows)
    if method == "taid":
        assert rows[1]["taid_t"] >= rows[0]["taid_t"] >= cfg.kd.taid_t_start


@pytest.mark.parametrize("setup", [rl.RLVariant("ppo", "teacher", "selective", 1e-3),
                                   rl.RLVariant("ppo", "initial", "always", 1e-3),
                                   rl.RLVariant("grpo", "teacher", "selective", 1e-3)], ids=["dgpo", "ppo", "grpo"])
def test_rl_steps_change_actor_and_critic(setup, smoke_cfg, tiny_teacher, dense, questions, tmp_path):
    actor, tok = _fresh(smoke_cfg)
    teacher, _ = tiny_teacher
    make = _rollout_fn(smoke_cfg, dense)
    make.tok = tok
    critic = None
    if setup.algo == "ppo":
        actor.save_pretrained(tmp_path / "init")
        critic = ValueModel.from_causal_lm(str(tmp_path / "init"))
        critic_before = _params(critic)
    before = _params(actor)
    rows = rl.train_rl(setup, actor, tok, None, teacher, questions, make, smoke_cfg, rl_budget(smoke_cfg), tmp_path / "run",
                       progress=False, critic=critic)
    assert [r["step"] for r in rows] == [1, 2]
    assert _changed(before, actor)
    for key in ("em", "wrong_share", "searches", "entropy", "clipfrac", "kl_teacher", "tokens_per_s"):
        assert key in rows[-1]
    # where the step's time went: every phase reported, each within the step, the critic's only where there is one
    phases = {k: v for k, v in rows[-1].items() if k.startswith("phase_")}
    assert set(phases) == {f"phase_{p}_s" for p in RL_PHASES}
    assert all(v >= 0 for v in phases.values()) and sum(phases.values()) <= rows[-1]["step_s"]
    assert phases["phase_rollout_s"] == rows[-1]["rollout_s"] and phases["phase_actor_update_s"] > 0
    assert (phases["phase_values_s"] > 0 and phases["phase_critic_update_s"] > 0) == (critic is not None)
    if critic is not None:
        assert _changed(critic_before, critic)
        assert not torch.equal(critic_before["head.weight"], critic.head.weight)
        assert rows[-1]["vf_loss"] > 0


def test_score_rollouts_asks_the_teacher_only_about_wrong_trajectories(smoke_cfg, tiny_teacher, kd_data, questions,
                                                                      tmp_path):
    """DGPO's gate before the arithmetic: the reference forward runs on the EM = 0 trajectories alone, and a
    correct trajectory's reference log-probs are its own, so its log-ratio (its KL) is exactly 0."""
    from dgpo_lib.env.rollout import Trajectory
    actor, tok = _fresh(smoke_cfg)
    teacher, _ = tiny_teacher
    trajs = [Trajectory(questions[i], s.prompt_ids, s.response_ids, s.action_mask, em=em)
             for i, (s, em) in enumerate(zip(kd_data[:3], (1.0, 0.0, 1.0)))]
    asked = []

    def teacher_logprobs(ts):
        asked.extend(ts)
        return rl._flat_scores(teacher, ts, tok.pad_token_id, 2)[0]

    actor.save_pretrained(tmp_path / "init")
    critic = ValueModel.from_causal_lm(str(tmp_path / "init"))
    dgpo = METHODS["dgpo"].rl.with_beta(1e-3)
    s = rl.score_rollouts(dgpo, trajs, actor, critic, teacher_logprobs, teacher, tok.pad_token_id, 2)
    assert asked == [trajs[1]] and s.gated == [1]
    assert s.scores.tolist() == [1.0, 0.0, 1.0] and s.old_v is not None
    ratio = (s.old_lp - s.ref_lp) * s.mask
    assert ratio[0].abs().sum() == 0 and ratio[2].abs().sum() == 0
    assert ratio[1].abs().sum() > 0
    n = int(s.mask[1].sum())
    assert torch.allclose(s.ref_lp[1, :n], teacher_logprobs([trajs[1]])[0, :n])


def _strip(rows):
    return [{k: v for k, v in r.items() if not (k.endswith("_s") or k == "tokens_per_s")} for r in rows]  # timings


def test_kd_kill_and_resume_matches_uninterrupted(smoke_cfg, tiny_teacher, kd_data, tmp_path):
    cfg = copy.deepcopy(smoke_cfg)
    cfg.kd.steps, cfg.train.save_every = 4, 1
    teacher, _ = tiny_teacher
    a, tok = _fresh(cfg)
    full = kd.train_kd(METHODS["taid"].kd, a, tok, teacher, kd_data, cfg, kd_budget(cfg), tmp_path / "a", progress=False)
    b, _ = _fresh(cfg)
    kd.train_kd(METHODS["taid"].kd, b, tok, teacher, kd_data, cfg, kd_budget(cfg), tmp_path / "b", progress=False, stop_after=2)
    b2, _ = _fresh(cfg)  # a new process would start from the initial weights and find the checkpoint
    resumed = kd.train_kd(METHODS["taid"].kd, b2, tok, teacher, kd_data, cfg, kd_budget(cfg), tmp_path / "b", progress=False)
    assert _strip(resumed) == _strip(full)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b2.parameters()))


def test_distillm_adaptive_schedule_follows_taid():
    """TAID's SampleGenerator: the threshold rises by 0.1 when the loss is not below the reference (the first loss,
    then the loss of the last rise), never when it falls; r picks fresh, replay or teacher data."""
    a = kd.AdaptiveSampling()
    for loss, want in [(2.0, 0.0), (1.5, 0.0), (1.9, 0.0), (2.0, 0.1), (2.5, 0.2), (2.4, 0.2)]:
        a.observe(loss)
        assert a.threshold == pytest.approx(want)
    a.threshold = 0.6
    assert a.source(0.2, step=50, total=100, buffer_len=1000, capacity=1000) == "fresh"     # 0.2 < 0.6 * 0.5
    assert a.source(0.4, step=50, total=100, buffer_len=1000, capacity=1000) == "replay"    # 0.3 <= 0.4 < 0.6
    assert a.source(0.4, step=50, total=100, buffer_len=10, capacity=1000) == "fresh"       # buffer not yet full
    assert a.source(0.7, step=50, total=100, buffer_len=10, capacity=1000) == "teacher"
    for _ in range(20):
        a.observe(10.0 + _)
    assert a.threshold == 1.0


def test_replay_buffer_keeps_the_newest_and_round_trips():
    import random
    b = kd.ReplayBuffer(capacity=3)
    b.add([Seq([i], [i + 1], [1]) for i in range(5)])
    assert [s.prompt_ids for s in b.items] == [[2], [3], [4]]
    c = kd.ReplayBuffer()
    c.load_state_dict(b.state_dict())
    assert c.capacity == 3 and c.items == b.items
    assert len(b.sample(random.Random(0), 8)) == 3


def test_gkd_kill_and_resume_with_its_replay_buffer(smoke_cfg, tiny_teacher, kd_data, dense, questions, tmp_path):
    cfg = copy.deepcopy(smoke_cfg)
    cfg.kd.steps, cfg.train.save_every, cfg.kd.gkd_lambda = 3, 1, 1.0
    teacher, _ = tiny_teacher

    def run(folder, stop_after=None):
        student, tok = _fresh(cfg)

        def student_rollout(step, n):
            seed_everything(step)
            env = SearchEnv(HFGenerator(student, tok), dense, tok, RolloutSettings.from_config(cfg, True))
            return seqs_of(env.run(questions[step:step + n]))
        rows = kd.train_kd(METHODS["gkd"].kd, student, tok, teacher, kd_data, cfg, kd_budget(cfg), folder, student_rollout=student_rollout,
                           progress=False, stop_after=stop_after)
        return rows, student

    full, a = run(tmp_path / "a")
    run(tmp_path / "b", stop_after=2)
    resumed, b = run(tmp_path / "b")
    assert _strip(resumed) == _strip(full)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_ppo_kill_and_resume_matches_uninterrupted(smoke_cfg, tiny_teacher, dense, questions, tmp_path):
    cfg = copy.deepcopy(smoke_cfg)
    cfg.rl.steps, cfg.train.save_every = 3, 1
    teacher, _ = tiny_teacher

    def run(folder, stop_after=None):
        actor, tok = _fresh(cfg)
        actor.save_pretrained(tmp_path / "init")
        make = _rollout_fn(cfg, dense)
        make.tok = tok
        setup = rl.RLVariant("ppo", "teacher", "selective", 1e-3)
        rows = rl.train_rl(setup, actor, tok, str(tmp_path / "init"), teacher, questions, make, cfg, rl_budget(cfg),
                           tmp_path / folder, progress=False, stop_after=stop_after)
        return rows, actor

    full, a = run("a")
    run("b", stop_after=1)
    resumed, b = run("b")
    assert _strip(resumed) == _strip(full)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_lora_kd_and_lora_ppo_with_adapter_off_reference(smoke_cfg, tiny_teacher, kd_data, dense, questions,
                                                         tmp_path):
    cfg = copy.deepcopy(smoke_cfg)
    cfg.train.lora = True
    teacher, _ = tiny_teacher
    student, tok = _fresh(cfg)
    rows = kd.train_kd(METHODS["kd"].kd, student, tok, teacher, kd_data, cfg, kd_budget(cfg), tmp_path / "kd", progress=False,
                       out_dir=tmp_path / "kd_out")
    assert len(rows) == 2 and (tmp_path / "kd_out" / "model.safetensors").exists()
    merged, _ = load_model(str(tmp_path / "kd_out"))
    base, _ = _fresh(cfg)
    assert _changed(_params(base), merged)  # the adapters were merged into the saved weights
    make = _rollout_fn(cfg, dense)
    make.tok = tok
    actor, _ = _fresh(cfg)
    before = _params(actor)
    rows = rl.train_rl(rl.RLVariant("ppo", "initial", "always", 1e-3), actor, tok, str(tmp_path / "kd_out"), teacher,
                       questions, make, cfg, rl_budget(cfg), tmp_path / "ppo", progress=False, out_dir=tmp_path / "ppo_out")
    assert len(rows) == 2 and "kl_ref" in rows[-1]
    after, _ = load_model(str(tmp_path / "ppo_out"))
    assert any(not torch.equal(before[k], v) for k, v in after.named_parameters() if k in before)


def test_a_new_kd_method_is_one_table_entry_and_its_loss(monkeypatch, smoke_cfg, tiny_teacher, kd_data, tmp_path):
    """A KD method added as one row of the method table, with a loss of its own in losses.py: the stage graph, its
    cache key and the trainer take it up with no other change."""
    from dgpo_lib.methods import KDMethod, Method
    from dgpo_lib.pipeline import keys
    from dgpo_lib.train import losses

    seen = []

    def my_loss(s, t, alpha):  # skew forward KL under another name, recording the arguments it is given
        seen.append(alpha)
        return losses.skew_forward_kl(s, t, alpha)

    monkeypatch.setattr(losses, "my_loss", my_loss, raising=False)
    row = Method("skd", "Skew forward KD", "kd", "student",
                 kd=KDMethod("skd", "my_loss", ("student", "teacher", "kd.skew_alpha")),
                 table=False)
    monkeypatch.setitem(METHODS, "skd", row)
    cfg = copy.deepcopy(smoke_cfg)
    cfg.eval.ablations = ["skd"]
    assert "kd_skd" in keys.stage_names(cfg) and "eval_skd" in keys.stage_names(cfg)
    assert keys.upstream(cfg, "kd_skd") == ["tgo", "student"] and "kd.skew_alpha" in keys.stage_reads(cfg, "kd_skd")
    student, tok = _fresh(smoke_cfg)
    teacher, _ = tiny_teacher
    rows = kd.train_kd(row.kd, student, tok, teacher, kd_data, cfg, kd_budget(cfg), tmp_path / "skd", progress=False)
    assert len(rows) == cfg.kd.steps and seen and set(seen) == {cfg.kd.skew_alpha}


def test_the_method_table_is_torch_free_and_matches_the_paper_rows():
    import subprocess
    import sys

    from dgpo_lib.book.paper_numbers import PAPER_TABLE1
    from dgpo_lib.methods import KDMethod, method, row_label
    code = ("import sys, dgpo_lib.methods, dgpo_lib.config, dgpo_lib.book.readings, dgpo_lib.book.claims; "
            "assert 'torch' not in sys.modules")  # the book learns names and labels without the trainers
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert [n for n, m in METHODS.items() if m.table] == list(PAPER_TABLE1)  # the paper's Table 1, in its order
    assert method("dgpo_beta_0.05").rl.beta == 0.05 and row_label("dgpo@final") == "DGPO (last step)"
    with pytest.raises(ValueError, match="unknown loss inputs"):
        KDMethod("x", "forward_kl", ("student", "logits"))
    with pytest.raises(ValueError, match="unknown method"):
        method("nope")


def test_the_critic_trains_on_its_own_micro_batches_and_the_epoch_order(smoke_cfg, tiny_teacher, dense, questions,
                                                                          tmp_path):
    """The paper preset's verl settings together (its own critic micro-batch, micro-batch-mean losses, prompts epoch
    by epoch): both models learn, and the critic's result depends on its micro-batch as verl's does."""
    import copy

    teacher, _ = tiny_teacher
    heads = {}
    for cmicro in (1, None):
        cfg = copy.deepcopy(smoke_cfg)
        cfg.rl.critic_micro_batch, cfg.rl.loss_reduction, cfg.rl.prompt_order = cmicro, "micro_batch_mean", "epochs"
        actor, tok = _fresh(cfg)
        make = _rollout_fn(cfg, dense)
        make.tok = tok
        actor.save_pretrained(tmp_path / f"init{cmicro}")
        critic = ValueModel.from_causal_lm(str(tmp_path / f"init{cmicro}"))
        before = _params(critic)
        rows = rl.train_rl(rl.RLVariant("ppo", "teacher", "selective", 1e-3), actor, tok, None, teacher, questions,
                           make, cfg, rl_budget(cfg), tmp_path / f"run{cmicro}", progress=False, critic=critic)
        assert [r["step"] for r in rows] == [1, 2] and _changed(before, critic) and rows[-1]["vf_loss"] > 0
        heads[cmicro] = critic.head.weight.detach().clone()
    assert not torch.equal(heads[1], heads[None])

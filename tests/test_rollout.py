import pytest

from dgpo_lib.train.batching import collate_seqs
from dgpo_lib.data.loaders import QAExample
from dgpo_lib.env.prompts import INVALID_ACTION
from dgpo_lib.generation.hf import HFGenerator, cut_at_stop
from dgpo_lib.env.rollout import RolloutSettings, SearchEnv, parse_action


def _q(i, ans="Paris"):
    return QAExample(str(i), f"question number {i} about towers", [ans], "test")


def _env(tok, gen, retriever, **kw):
    s = dict(max_turns=3, max_turn_tokens=64, max_obs_tokens=200, max_total_tokens=4000, topk=3)
    s.update(kw)
    return SearchEnv(gen, retriever, tok, RolloutSettings(**s))


def test_batch_stops_at_different_turns_and_masks_exactly(tiny, dense, scripted):
    _, tok = tiny
    scripts = {
        _q(0).question: ["<think>easy</think> <answer> Paris </answer>"],
        _q(1).question: ["<think>look</think> <search> Eiffel Tower </search>", "<answer> Paris </answer>"],
        _q(2).question: ["<search> Scott Derrickson </search>", "<search> Ed Wood </search>",
                         "<answer> Lyon </answer>"],
    }
    gen = scripted(tok, scripts)
    env = _env(tok, gen, dense)
    trajs = env.run([_q(0), _q(1), _q(2)])
    assert gen.calls == [3, 2, 1]  # rows leave the batch as they finish
    assert [t.n_searches for t in trajs] == [0, 1, 2]
    assert [t.em for t in trajs] == [1.0, 1.0, 0.0]
    assert [t.finish for t in trajs] == ["answer"] * 3
    assert trajs[2].queries == ["Scott Derrickson", "Ed Wood"]
    for t in trajs:
        assert len(t.action_mask) == len(t.response_ids)
        gen_ids = [i for i, m in zip(t.response_ids, t.action_mask) if m == 1]
        env_ids = [i for i, m in zip(t.response_ids, t.action_mask) if m == 0]
        # decoding the mask-1 tokens gives exactly the model's turns; mask-0 gives exactly the observations
        assert tok.decode(gen_ids) == "".join(scripts[t.question.question][: t.n_turns])
        obs = "".join(s.text for s in t.segments if s.kind != "model")
        assert tok.decode(env_ids) == obs
        assert "<information>" not in tok.decode(gen_ids)
    assert tok.decode([i for i, m in zip(trajs[2].response_ids, trajs[2].action_mask) if m == 0]).count(
        "<information>") == 2
    batch = collate_seqs(trajs, tok.pad_token_id)
    for b, t in enumerate(trajs):
        row = batch.input_ids[b][batch.action_mask[b] == 1].tolist()
        assert row == [i for i, m in zip(t.response_ids, t.action_mask) if m]
        assert batch.action_mask[b, : len(t.prompt_ids)].sum() == 0


def test_malformed_outputs_end_cleanly_with_zero_reward(tiny, dense, scripted):
    _, tok = tiny
    cases = {
        "unterminated": ["<search> never closed", "still nothing", "nope", "nah"],
        "empty query": ["<search>   </search>", "<search></search>", "x", "y"],
        "no answer": ["I think it is Paris.", "Paris.", "Paris!", "Paris?"],
        "too many searches": ["<search> a </search>"] * 10,
        "text after answer": ["<answer> Paris </answer> and more text <answer> Lyon"],
    }
    qs = [QAExample(str(i), f"case {k} question", ["Paris"], "t") for i, k in enumerate(cases)]
    gen = scripted(tok, {q.question: v for q, v in zip(qs, cases.values())})
    trajs = _env(tok, gen, dense, max_turns=2).run(qs)
    by = dict(zip(cases, trajs))
    for k in ("unterminated", "empty query", "no answer", "too many searches"):
        assert by[k].em == 0.0 and by[k].answer is None
    assert by["too many searches"].n_searches == 2 and by["too many searches"].finish == "max_turns"
    assert by["unterminated"].segments[1].text == INVALID_ACTION and by["unterminated"].n_searches == 0
    assert by["text after answer"].answer == "Paris" and by["text after answer"].em == 1.0


def test_observation_truncated_and_total_cap(tiny, dense, scripted):
    _, tok = tiny
    q = _q(5)
    gen = scripted(tok, {q.question: ["<search> Scott Derrickson </search>"] * 5})
    [t] = _env(tok, gen, dense, max_obs_tokens=10, max_turns=5, max_total_tokens=400).run([q])
    assert all(s.n_tokens <= 10 for s in t.segments if s.kind == "information")
    assert len(t.prompt_ids) + len(t.response_ids) <= 400


def test_cut_at_stop_is_token_exact(tiny):
    _, tok = tiny
    ids = tok("<search> a b </search> junk after <answer> x </answer>", add_special_tokens=False).input_ids
    cut = cut_at_stop(ids, tok)
    assert tok.decode(cut).endswith("</search>") and ids[: len(cut)] == cut
    eos = tok.eos_token_id
    assert cut_at_stop([ids[0], eos, ids[1]], tok, eos_id=eos) == [ids[0], eos]
    assert cut_at_stop(ids[:3], tok) == ids[:3]
    assert parse_action("<search> q </search>") == ("search", "q")
    assert parse_action("<answer>a</answer>") == ("answer", "a")
    assert parse_action("nothing") == (None, "")


def test_real_tiny_model_rollout(tiny, dense, smoke_cfg):
    from dgpo_lib.data.loaders import load_eval_sets
    model, tok = tiny
    qs = load_eval_sets(smoke_cfg)["nq_ctx"]
    env = SearchEnv(HFGenerator(model, tok), dense, tok, RolloutSettings.from_config(smoke_cfg, greedy=True))
    a = env.run(qs)
    b = env.run(qs)
    assert [t.response_ids for t in a] == [t.response_ids for t in b]  # greedy is deterministic
    for t in a:
        assert len(t.action_mask) == len(t.response_ids) > 0
        assert t.finish in ("answer", "eos", "max_turns", "length")
        model_turns = [s for s in t.segments if s.kind == "model"]
        assert all(s.n_tokens <= smoke_cfg.rollout.max_turn_tokens for s in model_turns)


@pytest.mark.parametrize("stops", [None, ("e",), ("a", "o")])
def test_kv_cached_generator_matches_plain_generate(tiny, dense, smoke_cfg, stops):
    """Keeping the KV cache across turns (shared prompt prefix, dropped rows, masked overshoot) must not change
    greedy trajectories. Stop strings that random text hits often make rows stop at different steps."""
    from dgpo_lib.data.loaders import load_eval_sets
    from dgpo_lib.generation.kv import KVGenerator
    model, tok = tiny
    print("attention:", model.config._attn_implementation)
    model.set_attn_implementation("sdpa")  # the default of real models; the KV generator swaps in its decode path
    qs = load_eval_sets(smoke_cfg)["hotpotqa_ctx"][:6]
    kw = {} if stops is None else {"stops": stops}
    settings = RolloutSettings.from_config(smoke_cfg, greedy=True)
    plain = SearchEnv(HFGenerator(model, tok, **kw), dense, tok, settings).run(qs)
    gen = KVGenerator(model, tok, **kw)
    cached = SearchEnv(gen, dense, tok, settings).run(qs)
    assert [t.response_ids for t in cached] == [t.response_ids for t in plain]
    assert [t.action_mask for t in cached] == [t.action_mask for t in plain]
    assert gen.stats["calls"] >= 2  # several turns went through one session
    # nothing is encoded twice (the plain path re-encodes every context each turn), the shared prefix once
    assert gen.stats["prefill_tokens"] < sum(len(t.prompt_ids) + len(t.response_ids) for t in cached)


def test_kv_sampling_respects_top_p():
    import torch
    from dgpo_lib.generation.kv import sample_next
    logits = torch.tensor([[5.0, 4.0, -10.0, -10.0]]).repeat(200, 1)
    torch.manual_seed(0)
    picks = sample_next(logits, 1.0, 0.5)
    assert set(picks.tolist()) == {0}  # the top token alone holds more than half the mass
    assert set(sample_next(logits, 1.0, 1.0).tolist()) <= {0, 1, 2, 3}
    assert sample_next(logits, 0.0, 1.0).tolist() == [0] * 200


def test_sampling_draws_each_token_with_its_probability_and_never_a_zero_one():
    import torch
    from dgpo_lib.generation.kv import inverse_cdf_sample
    torch.manual_seed(0)
    p = torch.tensor([0.0, 0.5, 0.0, 0.2, 0.3, 0.0])
    n = 200_000
    picks = inverse_cdf_sample(p.repeat(n, 1))
    freq = torch.bincount(picks, minlength=6).double() / n
    assert freq[[0, 2, 5]].tolist() == [0.0, 0.0, 0.0]  # zero mass: never drawn, first and last included
    assert torch.allclose(freq, p.double(), atol=4e-3)   # about 3.5 standard errors at n = 200k
    assert inverse_cdf_sample(torch.tensor([[2.0, 0.0, 6.0]])).item() in (0, 2)  # unnormalised rows work


def test_two_level_sampler_draws_what_a_whole_vocabulary_cumsum_draws():
    """The blocked cumulative sum picks the same token as one float64 cumsum over the vocabulary for the same
    uniform draw, on peaked and flat rows, a vocabulary the block does not divide, and zero-mass tails."""
    import torch
    from dgpo_lib.generation.kv import inverse_cdf_sample

    def one_level(probs):
        cdf = probs.cumsum(-1, dtype=torch.float64)
        u = torch.rand(probs.shape[0], 1, dtype=torch.float64) * cdf[:, -1:]
        return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1).squeeze(-1)

    g = torch.Generator().manual_seed(0)
    for vocab, scale in ((4096, 4.0), (1000, 0.5), (777, 8.0)):
        probs = torch.softmax(torch.randn(2048, vocab, generator=g) * scale, -1)
        probs[:, -50:] = 0.0  # a zero-mass tail, never drawn
        torch.manual_seed(1)
        ours = inverse_cdf_sample(probs)
        torch.manual_seed(1)
        assert torch.equal(ours, one_level(probs)), vocab
        assert int(ours.max()) < vocab - 50


def test_vllm_generator_falls_back_without_vllm_or_for_a_trained_policy(tiny, smoke_cfg):
    import copy
    from dgpo_lib.generation.kv import KVGenerator
    from dgpo_lib.generation import make_generator
    from dgpo_lib.generation.vllm import vllm_available
    model, tok = tiny
    cfg = copy.deepcopy(smoke_cfg)
    cfg.rollout.generator = "vllm"
    assert not vllm_available()  # no GPU here: the fallback is what runs
    assert isinstance(make_generator(model, tok, cfg, model_path="some/folder"), KVGenerator)
    assert isinstance(make_generator(model, tok, cfg), KVGenerator)
    cfg.rollout.generator = "other"
    with pytest.raises(ValueError, match="rollout.generator"):
        make_generator(model, tok, cfg)


def test_the_scored_answer_is_the_action_that_ended_the_episode(tiny, dense, scripted):
    """An unterminated <answer> in one turn never pairs with a </answer> of a later turn (Search-R1 scores the
    sequence with the environment's messages between turns)."""
    _, tok = tiny
    cases = {"retry": ["<answer> Paris", "<answer> Paris </answer>"],  # the retried answer counts: EM 1
             "stitched": ["<answer> Paris", "</answer>"]}             # no answer action ever ended it: EM 0
    qs = [QAExample(str(i), f"stitch {k} question", ["Paris"], "t") for i, k in enumerate(cases)]
    gen = scripted(tok, {q.question: v for q, v in zip(qs, cases.values())})
    retry, stitched = _env(tok, gen, dense, max_turns=1).run(qs)
    assert (retry.finish, retry.answer, retry.em) == ("answer", "Paris", 1.0)
    assert (stitched.finish, stitched.answer, stitched.em) == ("max_turns", None, 0.0)


def test_a_turn_ending_in_eos_without_an_action_gets_the_invalid_message_and_goes_on(tiny, dense, scripted):
    """Search-R1 decodes turns without special tokens: an EOS with no action is an invalid action like any
    other while turns remain; on the last turn it ends the episode."""
    _, tok = tiny
    eos = tok.eos_token
    q = QAExample("0", "eos retry question", ["Paris"], "t")
    gen = scripted(tok, {q.question: [f"I am not sure.{eos}", "<search> Eiffel Tower </search>",
                                      "<answer> Paris </answer>"]})
    [t] = _env(tok, gen, dense, max_turns=3).run([q])
    assert (t.finish, t.em, t.n_searches) == ("answer", 1.0, 1)
    assert [s.kind for s in t.segments[:2]] == ["model", "invalid"]
    assert tok.eos_token_id not in t.response_ids  # the EOS is dropped, as Search-R1's decode drops it
    q2 = QAExample("1", "eos last turn question", ["Paris"], "t")
    [t2] = _env(tok, scripted(tok, {q2.question: [f"no idea{eos}"]}), dense, max_turns=0).run([q2])
    assert t2.finish == "eos" and t2.response_ids[-1] == tok.eos_token_id

"""Continuous batching (dgpo_lib/generation/continuous.py) must give the same greedy episodes as the lock-step environment,
whatever the number of slots, and the observation fitting must keep the closing tag."""
import pytest

from dgpo_lib.generation.hf import HFGenerator
from dgpo_lib.env.rollout import RolloutSettings, SearchEnv, information_ids, run_batched


@pytest.mark.parametrize("stops,slots,total", [(None, 3, None), (("e",), 2, None), (("a", "o"), 16, None),
                                               (("e",), 3, 420)])
def test_continuous_matches_lock_step_generate(tiny, dense, smoke_cfg, stops, slots, total):
    """Slots fewer than questions (refilled as trajectories end) or more; stop strings that random text hits
    often make rows end turns, searches and episodes at different steps; a small total cap ends some for length."""
    from dgpo_lib.generation.continuous import ContinuousGenerator
    from dgpo_lib.data.loaders import load_eval_sets
    model, tok = tiny
    model.set_attn_implementation("sdpa")
    sets = load_eval_sets(smoke_cfg)
    qs = sets["hotpotqa_ctx"][:4] + sets["nq_ctx"][:3]
    kw = {} if stops is None else {"stops": stops}
    settings = RolloutSettings.from_config(smoke_cfg, greedy=True)
    settings.max_total_tokens = total or settings.max_total_tokens
    plain = SearchEnv(HFGenerator(model, tok, **kw), dense, tok, settings).run(qs)
    if total:
        assert "length" in {t.finish for t in plain}
    gen = ContinuousGenerator(model, tok, **kw)
    done = []
    cont = SearchEnv(gen, dense, tok, settings).run(qs, slots=slots, on_done=done.append)
    assert [t.question.id for t in cont] == [q.id for q in qs]  # question order, whatever the finishing order
    assert sorted(id(t) for t in done) == sorted(id(t) for t in cont)
    assert [t.response_ids for t in cont] == [t.response_ids for t in plain]
    assert [t.action_mask for t in cont] == [t.action_mask for t in plain]
    assert [(t.finish, t.n_turns, t.queries, t.em) for t in cont] == [(t.finish, t.n_turns, t.queries, t.em)
                                                                       for t in plain]
    # the shared prompt prefix is encoded once and no token twice
    assert gen.stats["prefill_tokens"] + gen.stats["decode_steps"] * min(slots, len(qs)) >= \
        gen.stats["generated_tokens"]
    assert gen.stats["prefill_tokens"] < sum(len(t.prompt_ids) + len(t.response_ids) for t in cont)


def test_run_batched_counts_questions_with_either_generator(tiny, dense, smoke_cfg):
    from dgpo_lib.generation.continuous import ContinuousGenerator
    from dgpo_lib.data.loaders import load_eval_sets
    model, tok = tiny
    qs = load_eval_sets(smoke_cfg)["nq_ctx"][:5]
    settings = RolloutSettings.from_config(smoke_cfg, greedy=True)
    a = run_batched(SearchEnv(ContinuousGenerator(model, tok), dense, tok, settings), qs, 2, progress=False)
    b = run_batched(SearchEnv(HFGenerator(model, tok), dense, tok, settings), qs, 2, progress=False)
    assert [t.response_ids for t in a] == [t.response_ids for t in b]


def test_information_block_keeps_its_closing_tag(tiny, corpus):
    _, tok = tiny
    docs = corpus[:3]
    full = information_ids(docs, tok, 10_000, "closed")
    assert full == information_ids(docs, tok, 10_000, "block")  # nothing to cut: the same block
    tail = tok("</information>\n\n", add_special_tokens=False).input_ids
    assert full[-len(tail):] == tail
    for budget in (len(full) // 2, len(full) - 5):
        cut = information_ids(docs, tok, budget, "block")
        assert cut == full[:budget] and "</information>" not in tok.decode(cut)  # Search-R1: the tag is lost
        closed = information_ids(docs, tok, budget, "closed")
        assert len(closed) == budget and closed == full[: budget - len(tail)] + tail
    assert information_ids(docs, tok, 3, "closed") == full[:3]  # no room for the tag: the plain cut
    with pytest.raises(ValueError, match="obs_truncation"):
        information_ids(docs, tok, 50, "middle")


def test_decode_attention_equals_sdpa_on_a_cache_view():
    """One query token over a K/V view with spare capacity (as the caches hand it over), grouped query heads and a
    boolean mask: the two-GEMM decode path gives SDPA's output."""
    import torch
    from types import SimpleNamespace
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from dgpo_lib.generation.kv import decode_attention

    torch.manual_seed(0)
    B, H, kvh, D, T, cap = 3, 6, 2, 8, 5, 9
    module = SimpleNamespace(num_key_value_groups=H // kvh, is_causal=True, training=False)
    q = torch.randn(B, H, 1, D)
    k = torch.randn(B, kvh, cap, D)[:, :, :T]
    v = torch.randn(B, kvh, cap, D)[:, :, :T]
    mask = torch.ones(B, 1, 1, T, dtype=torch.bool)
    mask[0, ..., :2] = False  # a row whose first columns are padding
    mine, _ = decode_attention(module, q, k, v, mask, scaling=0.3)
    ref, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3)
    assert mine.shape == ref.shape == (B, 1, H, D)
    torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-6)

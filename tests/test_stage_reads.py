"""Cache keys hash what their stage reads: every stage kind is run with each config read recorded
(tests/config_reads.py), and every key of every section is changed to see which stages rerun."""
import copy

import pytest
from config_reads import RUN_LEVEL, leaf_keys, recording

from dgpo_lib.config import Config, load_config
from dgpo_lib.pipeline import Run, keys

# One stage of each kind and of each KD data source / RL algorithm / start, run with validation curves and a
# teacher PPO on, so that the reads that only happen under those settings are made too.
RECORDED = ["student", "teacher", "tgo", "kd_seqkd", "kd_kd", "kd_gkd", "kd_distillm", "kd_taid", "kd_kd_then_gkd",
            "rl_ppo", "rl_dgpo", "rl_dgpo_grpo", "rl_dgpo_beta_0.01", "eval_kd", "eval_dgpo"]


def _declared(cfg, stage: str) -> set[str]:
    """Leaf keys a stage's key covers: its own reads and, through their keys, every upstream stage's."""
    every = leaf_keys(cfg)
    out = set()
    todo = [stage]
    while todo:
        s = todo.pop()
        for r in keys.stage_reads(cfg, s):
            out |= {k for k in every if k == r or k.startswith(r + ".")}
        todo += keys.upstream(cfg, s)
    return out


@pytest.fixture(scope="module")
def recorded_reads(tmp_path_factory):
    cfg = load_config("smoke", {"run_root": str(tmp_path_factory.mktemp("runs")), "data.n_val": 4,
                                "eval.val_points": 1, "kd.gkd_lambda": 1.0, "teacher.ppo_steps": 1,
                                "teacher.rft_rounds": 1, "kd.tgo_temperature": 0.5})
    reads = {}
    for stage in RECORDED:
        for up in keys.upstream(cfg, stage):  # upstream stages run unrecorded: their reads are their own
            Run(cfg, progress=False).output(up)
        with recording(cfg) as r:
            Run(cfg, progress=False).stage(stage)
        reads[stage] = r - RUN_LEVEL
    return cfg, reads


@pytest.mark.parametrize("stage", RECORDED)
def test_nothing_a_stage_reads_is_missing_from_its_key(recorded_reads, stage):
    """A read its key misses would let a changed setting reuse a stale result."""
    cfg, reads = recorded_reads
    missing = reads[stage] - _declared(cfg, stage) - set(keys.NOT_IN_KEYS)
    assert not missing, f"{stage} reads {sorted(missing)} but its cache key does not hash them"


def test_a_stage_key_hashes_nothing_its_stage_and_upstream_never_read(recorded_reads):
    """A key no stage reads would rerun stages for nothing (the dead keys train.log_every, train.pack_by_length).
    Keys read only under settings the smoke preset does not use are named here."""
    cfg, reads = recorded_reads
    other_settings = {  # read only under another setting than this test's smoke config
        "train.lora_r", "train.lora_alpha",                   # train.lora: true
    }
    read_somewhere = set().union(*reads.values())
    hashed = set().union(*(_declared(cfg, s) for s in RECORDED)) - set(keys.NOT_IN_KEYS)
    never = hashed - read_somewhere - other_settings
    assert not never, f"hashed by some stage key but read by no stage: {sorted(never)}"


# Which stages a change of a key reruns, for the keys that belong to one method or one kind of stage; every
# other key is checked against `stage_reads` below.
SPOT = {
    "kd.gkd_beta": {"kd_gkd", "kd_gkd_onpolicy", "kd_kd_then_gkd"},
    "kd.gkd_lambda": {"kd_gkd"},
    "kd.skew_alpha": {"kd_distillm"},
    "kd.taid_t_start": {"kd_taid"},
    "rl.grpo_group": {"rl_dgpo_grpo"},
    "rl.critic_lr": {"rl_ppo", "rl_dgpo", "rl_dgpo_no_coldstart", "rl_dgpo_kl_always", "rl_dgpo_beta_0.01"},
    "rl.beta": {"rl_dgpo", "rl_dgpo_no_coldstart", "rl_dgpo_kl_always", "rl_dgpo_grpo"},
    "kd.tgo_questions": {"tgo"},
    "eval.batch_size": {"teacher", "eval_student"},  # every evaluation and validation curve: all but healing
    "train.save_every": set(),
    "teacher.sft_micro_batch": set(),
    "teacher.rft_temperature": set(),  # no rejection sampling in the smoke preset: its settings are not read
    "teacher.rft_rounds": {"teacher"},
}


def _with(cfg, dotted, value):
    c = copy.deepcopy(cfg)
    obj = c
    *path, leaf = dotted.split(".")
    for p in path:
        obj = getattr(obj, p)
    setattr(obj, leaf, value)
    return c


def _key_changes(cfg, dotted, value):
    a, b = Run(cfg, progress=False), Run(_with(cfg, dotted, value), progress=False)
    return {s for s in a.stage_names() if a.stage_key(s) != b.stage_key(s)}


def _switched_on(cfg):
    """`cfg` with every switch of `keys.SWITCHED` on, so that the settings it guards are hashed."""
    for switch in keys.SWITCHED:
        cfg = _with(cfg, switch, 1)
    return cfg


def _another_value(key, value):
    from dgpo_lib.config import CHOICES
    if key in CHOICES:
        return next(c for c in CHOICES[key] if c != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return value + ["x"]
    if isinstance(value, dict):
        return {**value, "x": 1}
    return 1  # None


def _downstream(cfg, stages: set[str]) -> set[str]:
    names = keys.stage_names(cfg)
    out = set(stages)
    for s in names:  # upstream first
        if set(keys.upstream(cfg, s)) & out:
            out.add(s)
    return out


def test_every_key_of_every_section_reruns_the_stages_that_read_it(smoke_cfg):
    """For each leaf key: a change reruns exactly the stages that read it and every stage downstream of those."""
    cfg = smoke_cfg
    for key in sorted(leaf_keys(cfg) - RUN_LEVEL):
        value = _another_value(key, eval(f"cfg.{key}"))
        changed = _key_changes(cfg, key, value)
        # a setting guarded by a switch (keys.SWITCHED) is read, and hashed, only while its switch is on
        readers = {s for s in keys.stage_names(cfg) if key in _declared(cfg, s) | _declared(_with(cfg, key, value), s)}
        readers = {s for s in readers if key not in keys.NOT_IN_KEYS}
        assert changed == _downstream(cfg, readers), key
        if key in SPOT:
            assert changed == _downstream(cfg, SPOT[key]), key


def test_every_key_is_read_by_a_stage_or_places_the_run(smoke_cfg):
    """No dead keys: each key enters some stage's key, is a memory/bookkeeping knob, or only places the run."""
    on = _switched_on(smoke_cfg)
    hashed = set().union(*(_declared(on, s) for s in keys.stage_names(on)))
    dead = leaf_keys(smoke_cfg) - hashed - RUN_LEVEL - set(keys.NOT_IN_KEYS)
    assert not dead, f"keys that no stage reads: {sorted(dead)}"
    assert leaf_keys(Config()) == leaf_keys(smoke_cfg)

import pytest

from dgpo_lib.config import PRESETS, ConfigError, Config, describe, leaf_keys, load_config


def test_presets_share_the_same_keys():
    import yaml
    from dgpo_lib.config import PRESET_DIR
    keys = {p: leaf_keys(yaml.safe_load((PRESET_DIR / f"{p}.yaml").read_text())) for p in PRESETS}
    assert keys["smoke"] == keys["cpu"] == keys["paper"]
    # and every key of the schema is spelled out in each preset (nothing silently defaulted)
    assert keys["smoke"] == leaf_keys(Config().to_dict())


def test_presets_differ_in_values():
    s, c, p = (load_config(x) for x in PRESETS)
    assert s.models.teacher == "tiny-random" and c.models.teacher == "smollm2-135m-instruct"
    assert p.models.student == "Qwen/Qwen2.5-0.5B-Instruct" and p.rl.beta == 0.001 and p.rl.actor_lr == 1e-6
    assert p.retrieval.query_prefix == "query: " and p.rollout.max_turns == 4
    assert len({s.hash(), c.hash(), p.hash()}) == 3


def test_overrides_dict_and_cli_forms():
    c = load_config("smoke", {"rl.beta": 0.01, "seed": 3})
    assert c.rl.beta == 0.01 and c.seed == 3
    c2 = load_config("smoke", ["rl.beta=0.01", "seed=3", "data.eval_sets=nq,popqa", "train.lora=true"])
    assert c2.rl.beta == 0.01 and c2.data.eval_sets == ["nq", "popqa"] and c2.train.lora is True
    assert c.hash() != load_config("smoke").hash()


@pytest.mark.parametrize("bad,msg", [
    ({"rl.betta": 1}, "unknown config key 'rl.betta'"),
    ({"nope": 1}, "unknown config key 'nope'"),
    ({"rl.steps": "many"}, "'rl.steps' must be an integer"),
    ({"eval.rl_checkpoint": "sometimes"}, "'eval.rl_checkpoint'"),
    ({"rl": 3}, "'rl' is a section"),
])
def test_bad_overrides_name_the_key(bad, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(")):
        load_config("smoke", bad)


def test_unknown_preset_and_unknown_yaml_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        load_config("huge")
    f = tmp_path / "x.yaml"
    f.write_text("rl:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'rl.stepz'"):
        load_config(str(f))


def test_every_field_is_documented():
    lines = describe()
    assert all(line.split("# ", 1)[1].strip() for line in lines)


def test_a_seed_override_is_never_silently_replaced():
    from dgpo_lib.config import ConfigError, resolve_seed
    assert resolve_seed(None, {"seed": 1}) == 1          # README: `reproduce --preset cpu seed=1`
    assert resolve_seed(2, {}) == 2 and resolve_seed(None, {}) == 0
    assert resolve_seed(1, {"seed": 1}) == 1
    with pytest.raises(ConfigError, match="seed given twice"):
        resolve_seed(0, {"seed": 1})


def test_val_points_spread_validation_evenly_over_any_stage_length():
    from dgpo_lib.config import load_config, val_interval
    cfg = load_config("smoke", {"eval.val_every": 7})
    assert val_interval(cfg, 250) == 7 and val_interval(cfg, 30) == 7  # val_every alone: the same cadence
    cfg = load_config("smoke", {"eval.val_every": 7, "eval.val_points": 6})
    assert val_interval(cfg, 250) == 42 and val_interval(cfg, 30) == 5 and val_interval(cfg, 3) == 1
    assert val_interval(load_config("smoke"), 250) == 0  # no curves


# Keys whose value is free text or a path: a model id, a folder, a prompt prefix (checked where they are used:
# preflight finds missing files and models).
FREE_TEXT = {"preset", "run_root", "data.data_dir", "data.corpus", "retrieval.encoder", "retrieval.query_prefix",
             "retrieval.passage_prefix", "retrieval.index_path", "retrieval.server_url", "models.teacher",
             "models.student", "rl.cold_start"}


def _leaves(obj, prefix=""):
    import dataclasses
    from typing import get_type_hints
    hints = get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            yield from _leaves(v, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hints[f.name]


def test_every_choice_and_numeric_key_has_its_check():
    """Every int, float and str key is a choice key, has a range, or is free text (a path, an id, a prefix)."""
    from dgpo_lib.config import CHOICES, RANGES, Config
    from typing import get_args
    unchecked = []
    for key, typ in _leaves(Config()):
        kinds = set(get_args(typ)) or {typ}
        if kinds & {int, float, str} and not kinds & {bool} and key not in CHOICES | RANGES.keys() | FREE_TEXT:
            unchecked.append(key)
    assert not unchecked, f"keys with neither a choice list, a range nor a FREE_TEXT entry: {unchecked}"
    assert not (CHOICES.keys() | RANGES.keys()) - {k for k, _ in _leaves(Config())}, "a check names no key"


def _bad_values():
    from dgpo_lib.config import CHOICES, RANGES, Config
    types = dict(_leaves(Config()))
    for key in CHOICES:
        yield key, "not-a-choice", "expected one of"
    for key, (lo, hi) in RANGES.items():
        step = 0.5 if float in (getattr(types[key], "__args__", None) or (types[key],)) else 1
        yield key, lo - step, "must be"
        if hi is not None:
            yield key, hi + step, "must be"
    yield "eval.methods", ["dgpo", "not_a_method"], "unknown method"
    yield "eval.ablations", ["dgpo_beta_x"], "needs a number"


@pytest.mark.parametrize("key,value,words", list(_bad_values()))
def test_each_key_given_a_bad_value_stops_with_one_line_naming_it(key, value, words):
    """Before any work: one line naming the key and its value, and what to set it to."""
    with pytest.raises(ConfigError) as e:
        load_config("smoke", {key: value})
    msg = str(e.value)
    assert "\n" not in msg and f"'{key}'" in msg and words in msg, msg
    if words != "unknown method" and words != "needs a number":
        assert f"set {key}=" in msg, msg


@pytest.mark.parametrize("native, expected", [(True, "bfloat16"), (False, "float32")])
def test_auto_dtypes_become_what_the_hardware_runs_fast(monkeypatch, native, expected):
    # bfloat16 is emulated on AVX2-only CPUs (several times slower than float32): `auto` picks per machine,
    # once at load, so the records and cache keys name the dtype that ran
    from dgpo_lib.models import precision

    monkeypatch.setattr(precision, "native_bf16", lambda device_type=None: native)
    cfg = load_config("cpu")
    assert (cfg.retrieval.encoder_dtype, cfg.models.compute_dtype) == (expected, expected)
    assert load_config("cpu", ["models.compute_dtype=float32"]).models.compute_dtype == "float32"
    assert load_config("smoke").models.compute_dtype == "float32"  # smoke's own choice stays
    assert load_config("paper").models.compute_dtype == "bfloat16"


def test_native_bf16_reads_the_cpu_flags_when_torch_cannot_say(monkeypatch):
    import torch

    from dgpo_lib.models import precision

    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    precision.native_bf16.cache_clear()
    try:
        flags = open("/proc/cpuinfo").read().split()
        assert precision.native_bf16("cpu") == ("avx512_bf16" in flags or "amx_bf16" in flags)
    finally:
        precision.native_bf16.cache_clear()

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

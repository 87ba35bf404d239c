"""Which stages a config has, what each reads of the config, and the cache key that names its folder.

A stage's key hashes the config entries it reads (`STAGE_READS`) and its upstream stages' keys: changing `rl.beta`
reruns the RL stages and their evaluations, never healing, the teacher or KD. Pure functions of the config.
"""
from __future__ import annotations

import hashlib
import json

from dgpo_lib.config import Config
from dgpo_lib.methods import KD_ABLATIONS, KD_ROWS, METHODS, method

# What each kind of stage reads of the config (sections or dotted keys). Rollouts read the data, the retriever,
# the rollout settings and how models are run.
ROLLOUT_READS = ("data", "retrieval", "rollout", "models.dtype", "models.compute_dtype", "models.chat_template",
                 "models.few_shot")
STAGE_READS = {
    "student": ("seed", "data", "train", "models.student", "models.student_layers", "models.heal_steps",
                "models.heal_lr", "models.heal_batch", "models.heal_seq_len", "models.heal_held_out",
                "models.tiny_hidden", "models.tiny_layers", "models.dtype", "models.compute_dtype"),
    "teacher": ("seed", "train", "teacher", "models.teacher", "models.tiny_hidden", "models.tiny_layers",
                *ROLLOUT_READS),
    "tgo": ("seed", "kd.tgo_questions", "kd.tgo_temperature", *ROLLOUT_READS),
    "kd": ("seed", "train", "kd", *ROLLOUT_READS),
    "rl": ("seed", "train", "rl", *ROLLOUT_READS),
    "eval": ("seed", "eval.batch_size", *ROLLOUT_READS),
}
# Knobs that only split a batch into smaller forward passes change memory, not results: they stay out of the keys,
# so lowering one to fit a machine reuses what was trained with the larger value.
NOT_IN_KEYS = ("teacher.sft_micro_batch",)


def row_stage(row: str) -> str:
    """The stage that trains a results-table row's model (`dgpo@final` -> `rl_dgpo`)."""
    return method(row).stage_name


def rl_checkpoint(cfg: Config, row: str) -> str:
    """final or best_val: the `@` suffix of an RL row, else `eval.rl_checkpoint`."""
    pinned = row.partition("@")[2]
    if pinned and pinned not in ("final", "best_val"):
        raise ValueError(f"row {row!r}: the suffix after @ must be final or best_val")
    return pinned or cfg.eval.rl_checkpoint


def upstream(cfg: Config, name: str) -> list[str]:
    """The stages whose outputs stage `name` reads."""
    kind, _, what = name.partition("_")
    if kind in ("student", "teacher"):
        return []
    if kind == "tgo":
        return ["teacher"]
    if kind == "kd":
        return ["tgo", METHODS[method(what).start].stage_name]
    if kind == "rl":
        start = method(what).start
        from_release = start == "kd" and cfg.rl.cold_start  # a released cold start replaces the KD stage
        return ["student" if from_release else METHODS[start].stage_name, "teacher"]
    if kind == "eval":
        return [row_stage(what)]
    raise ValueError(f"unknown stage {name!r}")


def _pick(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d[part]
    return d


def stage_key(cfg: Config, name: str) -> str:
    """Hash of what stage `name` reads of the config and of its upstream stages' keys."""
    kind = name.partition("_")[0]
    reads = STAGE_READS[kind] + (("rl",) if kind == "teacher" and cfg.teacher.ppo_steps else ())
    d = cfg.to_dict()
    for dotted in NOT_IN_KEYS:
        section, _, key = dotted.partition(".")
        d[section].pop(key)
    extra = {}
    if kind == "eval" and upstream(cfg, name)[0].startswith("rl_"):
        extra["checkpoint"] = rl_checkpoint(cfg, name.partition("_")[2])
    blob = {"stage": name, "reads": {k: _pick(d, k) for k in reads}, **extra,
            "upstream": {u: stage_key(cfg, u) for u in upstream(cfg, name)}}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:12]


def final_rows(cfg: Config) -> list[str]:
    """`<row>@final` for the RL rows of the results table when the table shows the checkpoints selected on
    validation (`eval.rl_checkpoint: best_val`): the results chapter shows their last step beside them."""
    if cfg.eval.rl_checkpoint != "best_val":
        return []
    return [f"{r}@final" for r in cfg.eval.methods if row_stage(r).startswith("rl_")]


def stage_names(cfg: Config) -> list[str]:
    """Every stage this config's results table and ablations need, upstream first."""
    rows = list(dict.fromkeys([*cfg.eval.methods, *cfg.eval.ablations]))
    trained = [f"kd_{m}" for m in KD_ROWS] + [f"kd_{r}" for r in rows if r in KD_ABLATIONS] + \
        [f"rl_{r}" for r in rows if method(r).stage == "rl"]
    return ["student", "teacher", "tgo", *trained, *(f"eval_{r}" for r in rows + final_rows(cfg))]

"""Which stages a config has, what each reads of the config, and the cache key that names its folder.

A stage's key hashes the config entries it reads (`stage_reads`) and its upstream stages' keys: changing `rl.beta`
reruns DGPO's RL stages and their evaluations, never healing, the teacher or KD. Pure functions of the config.
"""
from __future__ import annotations

import hashlib
import json

from dgpo_lib.config import SWITCHED, Config
from dgpo_lib.methods import METHODS, method

# What each stage reads of the config (sections or dotted keys), recorded by running every kind of stage
# (tests/test_stage_reads.py: nothing a stage reads is missing from its key or its upstream stages' keys).
# Rollouts read the questions, the retriever, the rollout settings (greedy ones not the temperature) and the prompt.
ROLLOUT_READS = ("data", "retrieval", "models.dtype", "models.compute_dtype", "models.chat_template",
                 "models.few_shot", *(f"rollout.{k}" for k in ("max_turns", "max_turn_tokens", "max_obs_tokens",
                                                               "obs_truncation", "max_total_tokens", "top_p",
                                                               "batch_size", "generator")))
SAMPLED_READS = ("rollout.temperature",)
# Every training: the trainable weights, clipping, micro-batches and the validation curve it records (greedy
# rollouts in batches of eval.batch_size).
TRAIN_READS = ("train.lora", "train.lora_r", "train.lora_alpha", "train.max_grad_norm", "train.micro_batch",
               "eval.val_every", "eval.val_points", "eval.val_questions", "eval.batch_size")
KD_BUDGET = ("kd.steps", "kd.batch_size", "kd.lr", "kd.warmup_ratio", "kd.lr_schedule")
RL_COMMON = ("rl.steps", "rl.prompts_per_step", "rl.actor_lr", "rl.actor_warmup_ratio", "rl.ppo_epochs",
             "rl.mini_batch", "rl.clip", "rl.entropy_coef", "rl.whiten_advantages", "rl.warmup_from_zero",
             "rl.shuffle_mini_batches", "rl.loss_reduction", "rl.prompt_order")
RL_ALGO = {"ppo": ("rl.critic_lr", "rl.critic_warmup_ratio", "rl.value_clip", "rl.gamma", "rl.lam",
                   "rl.critic_head_std", "rl.critic_micro_batch"),
           "grpo": ("rl.grpo_group", "rl.grpo_same_trajectories")}
STUDENT_READS = ("seed", "data", "models.student", "models.student_layers", "models.student_layer_choice",
                 "models.layer_calib_passages", "models.heal_steps", "models.heal_lr",
                 "models.heal_batch", "models.heal_seq_len", "models.heal_held_out", "models.tiny_hidden",
                 "models.tiny_layers", "models.dtype", "models.compute_dtype", "train.max_grad_norm",
                 "eval.val_every", "eval.val_points")
TEACHER_READS = ("seed", "teacher.source", "teacher.sft_questions", "teacher.sft_epochs", "teacher.sft_lr",
                 "teacher.sft_batch", "teacher.sft_warmup_ratio", "teacher.ppo_steps", "models.teacher",
                 "models.tiny_hidden", "models.tiny_layers", *TRAIN_READS, *ROLLOUT_READS)
# Knobs that change memory or bookkeeping, not results, stay out of the keys, so lowering one to fit a machine
# reuses what was trained with the larger value: a micro-batch of the teacher's SFT (its batch is summed in
# another order, within float rounding), how often a checkpoint is written (resumption is exact, tested).
NOT_IN_KEYS = ("teacher.sft_micro_batch", "train.save_every")


def stage_reads(cfg: Config, name: str) -> tuple[str, ...]:
    """The config entries stage `name` reads (its upstream stages' reads come in through their keys)."""
    kind, _, what = name.partition("_")
    if kind == "student":
        return STUDENT_READS
    if kind == "teacher":
        ppo = ("rl",) + SAMPLED_READS if cfg.teacher.ppo_steps else ()  # its PPO reads the RL settings
        # settings hashed only while their switch is on (config.SWITCHED): finished stages from before them are reused
        rft = SWITCHED["teacher.rft_rounds"] if cfg.teacher.rft_rounds else ()
        return TEACHER_READS + ppo + rft
    if kind == "tgo":
        return ("seed", "kd.tgo_questions", "kd.tgo_temperature", *ROLLOUT_READS)
    if kind == "kd":
        m = method(what)
        return ("seed", *TRAIN_READS, *KD_BUDGET, *m.kd.keys, *ROLLOUT_READS)
    if kind == "rl":
        m = method(what)
        own = RL_COMMON + RL_ALGO[m.rl.algo] + (("rl.beta",) if m.rl.beta is None else ())
        own += ("rl.cold_start",) if m.start == "kd" else ()
        return ("seed", *TRAIN_READS, *own, *SAMPLED_READS, *ROLLOUT_READS)
    if kind == "eval":
        # an RL row without an @ suffix evaluates the checkpoint eval.rl_checkpoint names
        pick = ("eval.rl_checkpoint",) if method(what).stage == "rl" and "@" not in what else ()
        return ("seed", "eval.batch_size", *pick, *ROLLOUT_READS)
    raise ValueError(f"unknown stage {name!r}")


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
    d = cfg.to_dict()
    for dotted in NOT_IN_KEYS:
        section, _, key = dotted.partition(".")
        d[section].pop(key)
    reads = [k for k in stage_reads(cfg, name) if k not in NOT_IN_KEYS]
    blob = {"stage": name, "reads": {k: _pick(d, k) for k in reads},
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
    wanted = [*(f"kd_{r}" for r in rows if method(r).stage == "kd"), *(f"rl_{r}" for r in rows if method(r).stage == "rl"),
              *(f"eval_{r}" for r in rows + final_rows(cfg))]
    out: list[str] = []

    def add(name: str) -> None:  # a stage after the stages it reads (KD from another KD row's model, DGPO from KD)
        if name not in out:
            for up in upstream(cfg, name):
                add(up)
            out.append(name)

    for name in ["student", "teacher", "tgo", *wanted]:
        add(name)
    return out

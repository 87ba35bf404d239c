"""Typed configuration: one dataclass tree, three YAML presets (smoke / cpu / paper) with the same keys.

Every field carries a one-line doc in `field(metadata={"doc": ...})`; `describe()` prints them.
Overrides come as dotted keys (`{"rl.beta": 0.01}` or `"rl.beta=0.01"` on the CLI); an unknown key is an
error that names the key, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

PRESET_DIR = Path(__file__).parent / "presets"
PRESETS = ("smoke", "cpu", "paper")


class ConfigError(ValueError):
    """A preset, override or config file that does not match the schema."""


# Settings read only while a switch is on (the switch's own key among them): the config hash and the stage keys
# (pipeline/keys.py) leave them out while it is off.
SWITCHED = {"teacher.rft_rounds": ("teacher.rft_rounds", "teacher.rft_temperature", "teacher.rft_questions")}


def _f(default, doc: str):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass
class DataConfig:
    data_dir: str = _f("data", "folder with the FlashRAG-format QA files and corpora (repo-relative or absolute)")
    corpus: str = _f("corpus/cpu_corpus.jsonl.gz", "retrieval corpus jsonl (id, contents) relative to data_dir, or absolute")
    corpus_limit: int | None = _f(None, "keep only the first N passages of the corpus (smoke); None = all")
    train_sets: list = _f(["hotpotqa_train", "nq_train"], "training question files (names under data_dir/qa); "
                          "`<eval set>:rest` = that file's questions outside its evaluation subset")
    n_train_per_set: dict = _f({}, "cap on the questions taken (seeded) from a training set, e.g. {nq_train: 600}")
    n_train: int | None = _f(None, "training questions drawn (seeded) from train_sets; None = all")
    n_val: int = _f(0, "questions of train_sets held out (seeded) as the validation slice on which budgets and "
                    "checkpoints are chosen; never trained on, never an evaluation question")
    eval_sets: list = _f(["nq", "triviaqa", "popqa", "hotpotqa", "2wiki", "musique", "bamboogle"],
                         "evaluation benchmarks, in table order")
    n_eval: int | None = _f(None, "questions per benchmark (seeded subset); None = the full set")
    n_eval_per_set: dict = _f({}, "per-benchmark exceptions to n_eval, e.g. {bamboogle: 125}")
    split_seed: int = _f(0, "seed of the train/eval subsets (fixed across methods)")


@dataclass
class RetrievalConfig:
    kind: str = _f("dense", "dense (faiss over an encoder) or bm25")
    encoder: str = _f("minilm", "minilm (offline package), a hub id such as intfloat/e5-base-v2, or a local folder")
    query_prefix: str = _f("", "text prepended to queries (e5: 'query: ')")
    passage_prefix: str = _f("", "text prepended to passages (e5: 'passage: ')")
    index_type: str = _f("flat", "faiss index: flat, ivf (IVF-Flat), ivfpq or hnsw")
    nlist: int = _f(1024, "IVF lists (ivf/ivfpq)")
    nprobe: int = _f(32, "IVF lists searched per query")
    pq_m: int = _f(64, "product-quantiser sub-vectors (ivfpq)")
    hnsw_m: int = _f(32, "HNSW neighbours per node")
    topk: int = _f(3, "passages returned per search")
    encode_batch: int = _f(128, "passages per encoder batch")
    encode_chunk: int = _f(4096, "passages per saved embedding chunk (a killed index build resumes per chunk)")
    max_length: int = _f(256, "encoder max tokens per passage")
    passage_format: str = _f("title_dot", "passage text the encoder sees: contents ('\"Title\"\\ntext', wiki-18's field as "
                             "Search-R1 indexes it) or title_dot ('Title. text')")
    index_path: str | None = _f(None, "a prebuilt faiss index over the same corpus in the same order (Search-R1's "
                                "e5_Flat.index for wiki-18), loaded instead of building one")
    encoder_dtype: str = _f("float32", "encoder weights: float32, bfloat16 (about 2x faster on CPUs with AVX512-BF16, "
                            "several times slower on CPUs without; embeddings agree with float32 to cosine 0.9999), "
                            "float16 (GPU) or auto (bfloat16 where the hardware has it, else float32; resolved at load)")
    server_url: str | None = _f(None, "use a Search-R1 compatible POST /retrieve server instead of the in-process index")


@dataclass
class ModelConfig:
    teacher: str = _f("smollm2-135m-instruct", "teacher: smollm2-135m-instruct, tiny-random, a hub id or a folder")
    student: str = _f("smollm2-135m-instruct", "student base model (same tokenizer as the teacher)")
    student_layers: int | None = _f(10, "keep this many decoder layers of the student base (tiny-random included), "
                                    "chosen by student_layer_choice; None = all")
    student_layer_choice: str = _f("spaced", "which layers a pruned student keeps: spaced (evenly spaced, first and "
                                   "last included, as DistilBERT) or greedy (drop, one at a time, the layer whose "
                                   "removal raises the next-token loss on calibration passages least; measured on "
                                   "SmolLM2 cut to 15 of 30 layers: a far lower loss before healing and better "
                                   "reading after it, results/experiments/README.md)")
    layer_calib_passages: int = _f(32, "calibration passages of the greedy layer choice, of heal_seq_len tokens: the "
                                   "first of healing's training passages (never its held-out ones)")
    heal_steps: int = _f(0, "steps of distilling the unpruned base into a layer-pruned student on corpus text before any task training (0 = none)")
    heal_lr: float = _f(1.0e-3, "learning rate of the healing steps")
    heal_batch: int = _f(8, "passages per healing step")
    heal_seq_len: int = _f(128, "tokens per healing passage")
    heal_held_out: int = _f(64, "corpus passages held out of healing to measure the student's text loss before and after")
    tiny_hidden: int = _f(64, "hidden size of tiny random models (smoke)")
    tiny_layers: int = _f(2, "layers of tiny random models (smoke); the teacher gets twice as many")
    dtype: str = _f("float32", "weight dtype: float32 or bfloat16")
    compute_dtype: str = _f("float32", "autocast dtype of every forward pass: float32, bfloat16 (faster on CPUs with "
                            "AVX512-BF16 or AMX, several times slower without) or auto (bfloat16 where the hardware "
                            "has it, else float32; resolved at load)")
    chat_template: bool = _f(False, "wrap the prompt in the tokenizer's chat template (Qwen2.5-Instruct: yes)")
    few_shot: bool = _f(True, "prepend one worked example to the prompt (small models need it to use the tags)")


@dataclass
class RolloutConfig:
    max_turns: int = _f(4, "searches allowed before a final answer-only turn")
    max_turn_tokens: int = _f(500, "new tokens per generation turn")
    max_obs_tokens: int = _f(500, "tokens of an <information> block (longer ones are shortened, see obs_truncation)")
    obs_truncation: str = _f("block", "block: cut the block's tokens at max_obs_tokens (Search-R1; the closing "
                             "</information> tag is lost when the cut is hit); closed: cut early enough to end with "
                             "the closing tag (small budgets, where the cut is the rule)")
    max_total_tokens: int = _f(4096, "cap on prompt + response tokens")
    temperature: float = _f(1.0, "sampling temperature during training rollouts (evaluation is greedy)")
    top_p: float = _f(1.0, "nucleus sampling during training rollouts")
    batch_size: int = _f(32, "questions generated together")
    generator: str = _f("kv", "continuous: a fixed number of slots, each refilled with the next question as soon as its "
                        "trajectory ends, every row running its own turns (dgpo_lib.generation.continuous); "
                        "kv: batches in lock step, keeping each trajectory's KV cache across turns (dgpo_lib.generation.kv); hf: "
                        "transformers' generate, re-encoding the context every turn; vllm: vLLM for frozen models "
                        "(evaluation, teacher rollouts) when installed on a GPU, else continuous")


@dataclass
class TrainConfig:
    lora: bool = _f(False, "train LoRA adapters (peft) instead of all weights")
    lora_r: int = _f(16, "LoRA rank")
    lora_alpha: int = _f(32, "LoRA alpha")
    micro_batch: int = _f(8, "sequences per forward/backward")
    max_grad_norm: float = _f(1.0, "gradient clipping")
    save_every: int = _f(10, "checkpoint every N optimiser steps")


@dataclass
class TeacherConfig:
    source: str = _f("make", "pretrained (use models.teacher as is) or make (SFT on oracle trajectories, then PPO)")
    sft_questions: int | None = _f(None, "training questions with gold passages used for oracle trajectories")
    sft_epochs: int = _f(2, "epochs of teacher SFT")
    sft_lr: float = _f(1e-4, "teacher SFT learning rate")
    sft_batch: int = _f(8, "teacher SFT batch size (sequences per optimiser step)")
    sft_warmup_ratio: float = _f(0.05, "share of teacher SFT steps of linear learning-rate warm-up")
    sft_micro_batch: int | None = _f(None, "sequences per forward/backward pass of teacher SFT (None: "
                                     "train.micro_batch); smaller needs less memory, the optimiser steps are the same")
    ppo_steps: int = _f(0, "PPO steps after teacher SFT (0 = SFT only)")
    rft_rounds: int = _f(0, "rejection-sampling rounds after SFT: the teacher samples an episode per training "
                            "question and one SFT epoch on its correct ones follows (0 = none)")
    rft_temperature: float = _f(1.0, "sampling temperature of the rejection-sampling rounds")
    rft_questions: int | None = _f(None, "training questions sampled in each rejection-sampling round; None = the "
                                         "teacher's SFT questions")


@dataclass
class KDConfig:
    tgo_questions: int | None = _f(None, "training questions the teacher answers to build TGO; None = all")
    tgo_temperature: float = _f(0.0, "teacher sampling temperature for TGO (0 = greedy)")
    steps: int = _f(100, "optimiser steps of each KD method (same budget for every method)")
    batch_size: int = _f(8, "sequences per optimiser step")
    lr: float = _f(1e-4, "KD learning rate")
    warmup_ratio: float = _f(0.05, "linear warm-up share of the steps")
    lr_schedule: str = _f("constant", "constant (after the warm-up) or cosine (decay to 0: TAID's, with no warm-up)")
    gkd_beta: float = _f(0.1, "generalised JSD mixing weight (TAID repo: 0.1)")
    gkd_lambda: float = _f(0.5, "share of GKD steps that generate from the student and draw the batch from the "
                           "replay buffer (TAID's mixed_alpha)")
    skew_alpha: float = _f(0.1, "DistiLLM skew coefficient")
    replay_capacity: int = _f(1000, "student-generated sequences kept for GKD and DistiLLM (TAID's capacity)")
    distillm_val_every: int = _f(10, "DistiLLM: steps between held-out losses that drive its adaptive schedule")
    distillm_val_seqs: int = _f(32, "DistiLLM: held-out teacher sequences (from validation questions) in that loss")
    taid_t_start: float = _f(0.4, "TAID interpolation start")
    taid_t_end: float = _f(1.0, "TAID interpolation end")
    taid_alpha: float = _f(5e-4, "TAID adaptive step size")
    taid_beta: float = _f(0.99, "TAID momentum")


@dataclass
class RLConfig:
    steps: int = _f(100, "RL iterations (rollout + update)")
    prompts_per_step: int = _f(32, "questions rolled out per iteration")
    actor_lr: float = _f(1e-6, "policy learning rate")
    critic_lr: float = _f(1e-5, "value-model learning rate")
    actor_warmup_ratio: float = _f(0.285, "actor linear warm-up share")
    critic_warmup_ratio: float = _f(0.015, "critic linear warm-up share")
    ppo_epochs: int = _f(1, "passes over each rollout batch")
    mini_batch: int = _f(16, "trajectories per PPO optimiser step")
    clip: float = _f(0.2, "PPO ratio clip")
    value_clip: float = _f(0.5, "value-loss clip range")
    gamma: float = _f(1.0, "GAE discount")
    lam: float = _f(1.0, "GAE lambda")
    entropy_coef: float = _f(1e-3, "entropy bonus")
    beta: float = _f(1e-3, "KL-in-reward coefficient of DGPO and its ablations (the teacher-KL penalty); the PPO "
                      "baseline keeps Search-R1's 0.001")
    grpo_group: int = _f(5, "rollouts per question for the GRPO ablation")
    grpo_same_trajectories: bool = _f(False, "GRPO rolls out prompts_per_step / grpo_group questions, as many "
                                      "trajectories as PPO (ours); false = prompts_per_step questions x grpo_group "
                                      "(the authors' 512 x 5)")
    cold_start: str | None = _f(None, "a model (hub id or folder) that DGPO and the other cold-started RL variants start "
                                "from instead of this run's KD stage; the authors' train_dgpo.sh starts from their "
                                "released omron-sinicx/Qwen2.5-0.5B-Instruct-kd")
    whiten_advantages: bool = _f(True, "normalise advantages over the batch's action tokens")
    warmup_from_zero: bool = _f(False, "verl's warm-up: int(ratio * steps) warm-up steps and a learning-rate factor "
                                "min(1, s / warm) at update s, so the first update runs at 0 (false: (s + 1) / warm, "
                                "round(ratio * steps))")
    shuffle_mini_batches: bool = _f(True, "shuffle the trajectories before cutting mini-batches (verl's "
                                    "actor.shuffle is false: mini-batches in rollout order)")
    loss_reduction: str = _f("token_mean", "token_mean: each loss is the token mean over the mini-batch; "
                             "micro_batch_mean: the mean of the micro-batches' token means, micro-batches of "
                             "train.micro_batch trajectories in order (verl's loss / gradient_accumulation)")
    prompt_order: str = _f("sample", "sample: each step draws its prompts afresh with the step's seed; epochs: "
                           "consecutive slices of a permutation drawn once per epoch, the rest dropped (verl's "
                           "shuffled DataLoader with drop_last)")
    critic_micro_batch: int | None = _f(None, "trajectories per critic micro-batch (verl: critic.ppo_micro_batch_size "
                                        "per GPU); None = train.micro_batch, the actor's")
    critic_head_std: float = _f(1e-3, "std of the critic's value head at initialisation (zero bias); verl's "
                                "AutoModelForTokenClassification head: the model's initializer_range, 0.02 for Qwen2.5")


@dataclass
class EvalConfig:
    batch_size: int = _f(32, "questions per greedy evaluation batch")
    val_every: int = _f(0, "greedy EM on the validation slice (data.n_val) every N optimiser steps of the teacher's "
                        "SFT, each KD method and each RL run, and before the first and after the last step: the "
                        "learning curves budgets are chosen on; the student's healing logs its held-out text loss "
                        "as often (0 = none; not part of any stage's cache key)")
    val_points: int = _f(0, "validation points per training stage, spread evenly over its steps (every "
                          "ceil(steps / val_points) steps); when > 0 it replaces val_every, so a 30-step RL run and a "
                          "250-step KD run get curves of the same resolution")
    val_questions: int | None = _f(None, "the first N questions of the validation slice score the curves (None: all "
                                   "data.n_val); fewer make each point cheaper and noisier")
    rl_checkpoint: str = _f("final", "which model of an RL run a results row evaluates: final (its last step) or "
                            "best_val (the step with the best validation EM, needs val_every); a row named "
                            "<variant>@final or <variant>@best_val evaluates that one whatever this says")
    methods: list = _f(["student", "teacher", "ppo", "gkd", "seqkd", "kd", "distillm", "taid", "dgpo"],
                       "rows of the results table")
    ablations: list = _f(["dgpo_no_coldstart", "dgpo_kl_always", "dgpo_grpo", "dgpo_beta_0.01", "gkd_onpolicy", "kd_then_gkd"],
                         "ablation runs of notebook 06")


@dataclass
class Config:
    preset: str = _f("smoke", "name of the preset this config came from")
    seed: int = _f(0, "global seed (python, numpy, torch, data order)")
    run_root: str = _f("runs", "folder that holds the cached stages of every run")
    threads: int | None = _f(None, "torch CPU threads; None = library default")
    data: DataConfig = field(default_factory=DataConfig, metadata={"doc": "benchmark data and corpus"})
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig, metadata={"doc": "retriever"})
    models: ModelConfig = field(default_factory=ModelConfig, metadata={"doc": "teacher and student"})
    rollout: RolloutConfig = field(default_factory=RolloutConfig, metadata={"doc": "Search-R1 rollout"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"doc": "shared training mechanics"})
    teacher: TeacherConfig = field(default_factory=TeacherConfig, metadata={"doc": "making the teacher"})
    kd: KDConfig = field(default_factory=KDConfig, metadata={"doc": "stage 1 and the KD baselines"})
    rl: RLConfig = field(default_factory=RLConfig, metadata={"doc": "PPO / DGPO / GRPO"})
    eval: EvalConfig = field(default_factory=EvalConfig, metadata={"doc": "evaluation"})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_record(self) -> dict:
        """`to_dict` for files that are committed with results: `run_root` as `loaders.recorded_path` gives it (it
        places a run and changes no result, and an absolute one is one machine's folder)."""
        from dgpo_lib.data.loaders import recorded_path
        return {**self.to_dict(), "run_root": recorded_path(self.run_root)}

    def hash(self, *sections: str) -> str:
        """Short stable hash of the whole config, or of the named sections only (stage cache keys). Settings a
        switch that is off guards (`SWITCHED`) are left out: adding an option, off, keeps every earlier hash."""
        d = self.to_dict()
        for switch, guarded in SWITCHED.items():
            section, _, key = switch.partition(".")
            if not d[section][key]:
                for g in guarded:
                    d[section].pop(g.partition(".")[2])
        if sections:
            d = {k: d[k] for k in sections}
        d.pop("preset", None)
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Check/convert one leaf value against its annotation; the error names the key."""
    origin = get_origin(typ)
    args = get_args(typ)
    if value is None:
        if typ is type(None) or type(None) in args:
            return None
        raise ConfigError(f"config key '{key}' may not be null")
    if origin is not None and type(None) in args:  # Optional[X]
        typ = next(a for a in args if a is not type(None))
        origin = get_origin(typ)
    if typ is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {type(value).__name__}")
        return value
    if typ in (list,) or origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list, got {type(value).__name__}")
        return value
    if typ is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true/false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}") from None
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}") from None
    if typ is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return str(value)
    return value


def _apply(obj: Any, updates: dict, prefix: str = "") -> None:
    hints = get_type_hints(type(obj))
    names = {f.name for f in fields(obj)}
    for k, v in updates.items():
        key = f"{prefix}{k}"
        if k not in names:
            raise ConfigError(f"unknown config key '{key}' (known here: {', '.join(sorted(names))})")
        cur = getattr(obj, k)
        if is_dataclass(cur):
            if not isinstance(v, dict):
                raise ConfigError(f"config key '{key}' is a section; give a mapping, got {v!r}")
            _apply(cur, v, key + ".")
        else:
            setattr(obj, k, _coerce(v, hints[k], key))


def _dotted_to_nested(overrides: dict | list | None) -> dict:
    nested: dict = {}
    if overrides is None:
        return nested
    if isinstance(overrides, (list, tuple)):
        pairs = []
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override '{item}' is not of the form key=value")
            k, v = item.split("=", 1)
            pairs.append((k.strip(), yaml.safe_load(v)))
    else:
        pairs = list(overrides.items())
    for k, v in pairs:
        parts = k.split(".")
        d = nested
        for p in parts[:-1]:
            d = d.setdefault(p, {})
            if not isinstance(d, dict):
                raise ConfigError(f"override '{k}' conflicts with another override")
        d[parts[-1]] = v
    return nested


def resolve_seed(seed: int | None, overrides: dict) -> int:
    """The seed of a run given both a `--seed`/`seed` argument and a `seed=` override: either alone wins over the
    preset; both must agree (a silently replaced seed would make a run other than the one asked for)."""
    if "seed" in overrides and seed is not None and int(overrides["seed"]) != seed:
        raise ConfigError(f"seed given twice: seed={overrides['seed']} and --seed {seed}")
    if seed is not None:
        return seed
    return int(overrides["seed"]) if "seed" in overrides else 0


def load_config(preset: str = "smoke", overrides: dict | list | None = None) -> Config:
    """Build the config of `preset` (a name or a YAML path) with `overrides` applied on top."""
    path = Path(preset)
    if path.suffix not in (".yaml", ".yml"):
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset '{preset}' (choose one of: {', '.join(PRESETS)}, or a .yaml path)")
        path = PRESET_DIR / f"{preset}.yaml"
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    cfg = Config()
    _apply(cfg, raw)
    _apply(cfg, _dotted_to_nested(overrides))
    if cfg.preset != path.stem and path.parent == PRESET_DIR:
        cfg.preset = path.stem
    validate(cfg)
    _resolve_auto(cfg)
    return cfg


AUTO_DTYPE_KEYS = ("retrieval.encoder_dtype", "models.compute_dtype")


def _resolve_auto(cfg: Config) -> None:
    """Turn `auto` dtypes into the concrete one this machine runs fast, so that records and cache keys name
    what ran (a run on an AVX2-only CPU and one on an AVX512-BF16 CPU do not share stages)."""
    from dgpo_lib.models.precision import resolve_dtype

    for key in AUTO_DTYPE_KEYS:
        section, name = key.split(".")
        obj = getattr(cfg, section)
        setattr(obj, name, resolve_dtype(getattr(obj, name)))


# Every choice key and every numeric key, with what it may be: checked before any work starts (`validate`).
CHOICES = {
    "retrieval.kind": ("dense", "bm25"),
    "retrieval.index_type": ("flat", "ivf", "ivfpq", "hnsw"),
    "retrieval.passage_format": ("contents", "title_dot"),
    "retrieval.encoder_dtype": ("float32", "bfloat16", "float16", "auto"),
    "models.dtype": ("float32", "bfloat16", "float16"),
    "models.compute_dtype": ("float32", "bfloat16", "float16", "auto"),
    "rollout.obs_truncation": ("block", "closed"),
    "rollout.generator": ("continuous", "kv", "hf", "vllm"),
    "teacher.source": ("pretrained", "make"),
    "kd.lr_schedule": ("constant", "cosine"),
    "eval.rl_checkpoint": ("final", "best_val"),
    "rl.loss_reduction": ("token_mean", "micro_batch_mean"),
    "rl.prompt_order": ("sample", "epochs"),
    "models.student_layer_choice": ("spaced", "greedy"),
}
# (lowest, highest) allowed, None = unbounded; a key that may be null is checked only when it is set.
RANGES = {
    "seed": (0, None), "threads": (1, None),
    "data.corpus_limit": (1, None), "data.n_train": (1, None), "data.n_val": (0, None), "data.n_eval": (1, None),
    "data.split_seed": (0, None),
    "retrieval.nlist": (1, None), "retrieval.nprobe": (1, None), "retrieval.pq_m": (1, None),
    "retrieval.hnsw_m": (1, None), "retrieval.topk": (1, None), "retrieval.encode_batch": (1, None),
    "retrieval.encode_chunk": (1, None), "retrieval.max_length": (1, None),
    "models.student_layers": (1, None), "models.heal_steps": (0, None), "models.heal_lr": (0, None),
    "models.heal_batch": (1, None), "models.heal_seq_len": (2, None), "models.heal_held_out": (0, None),
    "models.layer_calib_passages": (1, None),
    "models.tiny_hidden": (8, None), "models.tiny_layers": (1, None),
    "rollout.max_turns": (0, None), "rollout.max_turn_tokens": (1, None), "rollout.max_obs_tokens": (1, None),
    "rollout.max_total_tokens": (16, None), "rollout.temperature": (0, None), "rollout.top_p": (0, 1),
    "rollout.batch_size": (1, None),
    "train.lora_r": (1, None), "train.lora_alpha": (1, None), "train.micro_batch": (1, None),
    "train.max_grad_norm": (0, None), "train.save_every": (1, None),
    "teacher.sft_questions": (1, None), "teacher.sft_epochs": (0, None), "teacher.sft_lr": (0, None),
    "teacher.sft_batch": (1, None), "teacher.sft_warmup_ratio": (0, 1), "teacher.sft_micro_batch": (1, None),
    "teacher.ppo_steps": (0, None), "teacher.rft_rounds": (0, None), "teacher.rft_temperature": (0, None),
    "teacher.rft_questions": (1, None),
    "kd.tgo_questions": (1, None), "kd.tgo_temperature": (0, None), "kd.steps": (0, None),
    "kd.batch_size": (1, None), "kd.lr": (0, None), "kd.warmup_ratio": (0, 1), "kd.gkd_beta": (0, 1),
    "kd.gkd_lambda": (0, 1), "kd.skew_alpha": (0, 1), "kd.replay_capacity": (1, None),
    "kd.distillm_val_every": (1, None), "kd.distillm_val_seqs": (1, None), "kd.taid_t_start": (0, 1),
    "kd.taid_t_end": (0, 1), "kd.taid_alpha": (0, None), "kd.taid_beta": (0, 1),
    "rl.steps": (0, None), "rl.prompts_per_step": (1, None), "rl.actor_lr": (0, None), "rl.critic_lr": (0, None),
    "rl.actor_warmup_ratio": (0, 1), "rl.critic_warmup_ratio": (0, 1), "rl.ppo_epochs": (1, None),
    "rl.mini_batch": (1, None), "rl.clip": (0, None), "rl.value_clip": (0, None), "rl.gamma": (0, 1),
    "rl.lam": (0, 1), "rl.entropy_coef": (0, None), "rl.beta": (0, None), "rl.grpo_group": (2, None),
    "rl.critic_head_std": (0, None), "rl.critic_micro_batch": (1, None),
    "eval.batch_size": (1, None), "eval.val_every": (0, None), "eval.val_points": (0, None),
    "eval.val_questions": (1, None),
}


def _get(cfg: Config, dotted: str):
    obj = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _range_words(lo, hi) -> str:
    if hi is None:
        return f">= {lo}"
    return f"between {lo} and {hi}"


def validate(cfg: Config) -> None:
    """Every choice key, every numeric range and the rows of the results table, before any work starts; the
    error names the key, its value and what would fit."""
    from dgpo_lib.methods import method

    for key, ok in CHOICES.items():
        val = _get(cfg, key)
        if val not in ok:
            raise ConfigError(f"config key '{key}' = {val!r}: expected one of {', '.join(ok)}; set {key}=<one of them>")
    for key, (lo, hi) in RANGES.items():
        val = _get(cfg, key)
        if val is not None and (val < lo or (hi is not None and val > hi)):
            null = " (or null: " + _doc(key).split("None = ", 1)[1].split(";")[0] + ")" if "None = " in _doc(key) else ""
            raise ConfigError(f"config key '{key}' = {val!r}: must be {_range_words(lo, hi)}{null}; "
                              f"set {key}=<a value {_range_words(lo, hi)}>")
    for key in ("eval.methods", "eval.ablations"):
        for row in _get(cfg, key):
            try:
                method(row)
            except ValueError as e:
                raise ConfigError(f"config key '{key}': {e}") from None
    if cfg.teacher.rft_rounds and not cfg.teacher.rft_temperature > 0:
        raise ConfigError(f"config key 'teacher.rft_temperature' = {cfg.teacher.rft_temperature}: rejection sampling "
                          "samples; set teacher.rft_temperature=<a value > 0> (1.0: the SFT teacher's own distribution)")
    if cfg.kd.taid_t_start > cfg.kd.taid_t_end:
        raise ConfigError(f"config keys 'kd.taid_t_start' = {cfg.kd.taid_t_start} and 'kd.taid_t_end' = "
                          f"{cfg.kd.taid_t_end}: TAID's t rises from the start to the end; set taid_t_start <= taid_t_end")


def _doc(dotted: str) -> str:
    """The one-line doc of a key."""
    section, _, key = dotted.rpartition(".")
    obj = _get(Config(), section) if section else Config()
    return next(f.metadata.get("doc", "") for f in fields(obj) if f.name == key)


def describe(obj: Any = None, prefix: str = "") -> list[str]:
    """One line per leaf key: `key = value  # doc`."""
    obj = obj if obj is not None else Config()
    lines = []
    for f in fields(obj):
        v = getattr(obj, f.name)
        if is_dataclass(v):
            lines += describe(v, prefix + f.name + ".")
        else:
            lines.append(f"{prefix}{f.name} = {v!r}  # {f.metadata.get('doc', '')}")
    return lines


def leaf_keys(d: dict, prefix: str = "", schema: Any = None) -> set[str]:
    """Dotted keys of a (YAML) mapping, descending only into the config's sections, not into dict values."""
    schema = schema if schema is not None else Config()
    out = set()
    for k, v in d.items():
        sub = getattr(schema, k, None)
        if isinstance(v, dict) and is_dataclass(sub):
            out |= leaf_keys(v, prefix + k + ".", sub)
        else:
            out.add(prefix + k)
    return out


def val_interval(cfg: "Config", steps: int) -> int:
    """Optimiser steps between validation points of a stage of `steps` steps (0: no curve)."""
    e = cfg.eval
    return max(1, -(-steps // e.val_points)) if e.val_points > 0 else e.val_every

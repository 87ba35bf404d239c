"""What the observation budget (`rollout.max_obs_tokens`) hides, replayed on an evaluation stage's own searches: for
each cut length, the share of searches whose visible `<information>` block holds a gold answer (against all three
passages), and the block's length in tokens, the price every later forward pass pays. No model runs: the
retrieved passage ids are in the stage's records, the cut is the rollout's own (`information_ids`).
With `--model`, that model (a trained teacher's folder) also answers the validation slice of training questions
greedily at each cut: what a longer observation is worth in EM, and what it costs in seconds.

    .venv/bin/python benchmarks/observation_budget.py [--preset cpu] [--records results/cpu/eval_teacher]
        [--cuts 160 240 320 400 500] [--model runs/<...>/teacher/model [--val-cuts 160 320 500]]
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
from common import table, write

from dgpo_lib.cli import parse, parser
from dgpo_lib.config import load_config
from dgpo_lib.data.loaders import load_cfg_corpus, repo_path, shown_path
from dgpo_lib.env.rollout import information_ids
from dgpo_lib.models.loading import load_tokenizer, resolve_model_path


def searches_of(folder: Path) -> list[tuple[list[str], list[str]]]:
    """(retrieved passage ids, gold answers) of every search in the folder's `records_*.jsonl`."""
    out = []
    for f in sorted(folder.glob("records_*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            out += [(ids, r["golden_answers"]) for ids in r["retrieved_ids"]]
    if not out:
        raise SystemExit(f"{folder}: no searches in records_*.jsonl (an evaluation stage's folder is expected)")
    return out


def validation_rows(cfg, model_path: str, cuts: list[int]) -> list[dict]:
    """Greedy validation EM (and searches, hit ratio, seconds) of one model at each observation budget."""
    from dgpo_lib.models.loading import load_model
    from dgpo_lib.models.precision import set_compute_dtype
    from dgpo_lib.pipeline.resources import Resources

    set_compute_dtype(cfg.models.compute_dtype)
    model, tok = load_model(model_path, cfg.models.dtype)
    rows = []
    for cut in cuts:
        c = copy.deepcopy(cfg)
        c.rollout.max_obs_tokens, c.eval.val_points = cut, max(c.eval.val_points, 1)
        fn = Resources(c, repo_path(c.run_root), progress=False).val_fn(tok)
        if fn is None:
            raise SystemExit(f"preset {cfg.preset}: no validation slice (data.n_val) to evaluate --model on")
        t0 = time.perf_counter()
        row = fn(model, 0)
        n = len(Resources(c, repo_path(c.run_root)).val_questions()[: c.eval.val_questions])
        rows.append({"max_obs_tokens": cut, "questions": n, **{k: row[k] for k in ("val_em", "val_searches", "val_hit_ratio")},
                     "val_s": round(time.perf_counter() - t0, 1)})
        print(table(rows[-1:], list(rows[-1])))
    return rows


def model_words(path: str) -> str:
    """The model folder as the results file records it: relative to the repository, else its last three parts
    (`<preset>-<stage key>/teacher/model`), which name the stage without another machine's folders."""
    shown = shown_path(path)
    return shown if not Path(shown).is_absolute() else "/".join(Path(shown).parts[-3:])


def main():
    ap = parser(__doc__)
    ap.add_argument("--records", default="results/cpu/eval_teacher")
    ap.add_argument("--cuts", type=int, nargs="+", default=[160, 240, 320, 400, 500])
    ap.add_argument("--model", default=None, help="a trained model folder to evaluate on the validation slice")
    ap.add_argument("--val-cuts", type=int, nargs="+", default=[160, 320, 500])
    a = parse(ap)
    cfg = load_config(a.preset, a.overrides)
    tok = load_tokenizer(resolve_model_path(cfg.models.teacher, "teacher"))
    by_id = {p.id: p for p in load_cfg_corpus(cfg)}
    searches = searches_of(repo_path(a.records))
    missing = sorted({i for ids, _ in searches for i in ids} - by_id.keys())
    if missing:
        raise SystemExit(f"{a.records}: {len(missing)} retrieved passage ids (e.g. {missing[0]}) are not in preset "
                         f"{a.preset}'s corpus with these overrides: the records come from another config")
    full = [information_ids([by_id[i] for i in ids], tok, 10 ** 6, cfg.rollout.obs_truncation) for ids, _ in searches]
    shown = lambda ids, gold: any(g in tok.decode(ids) for g in gold)  # noqa: E731  (raw substring, as DGPO's hit ratio)
    in_full = np.array([shown(f, g) for f, (_, g) in zip(full, searches)])
    rows = []
    for cut in a.cuts:
        cut_ids = [information_ids([by_id[i] for i in ids], tok, cut, cfg.rollout.obs_truncation)
                   for ids, _ in searches]
        seen = np.array([shown(c, g) for c, (_, g) in zip(cut_ids, searches)])
        rows.append({"max_obs_tokens": cut, "answer_visible": float(seen.mean()),
                     "share_of_retrieved_answers": float(seen.sum() / max(in_full.sum(), 1)),
                     "mean_block_tokens": float(np.mean([len(c) for c in cut_ids])),
                     "blocks_cut": float(np.mean([len(c) < len(f) for c, f in zip(cut_ids, full)]))})
    print(f"{len(searches)} searches from {a.records}; a gold answer is in the three passages in "
          f"{in_full.mean():.1%}, whose whole block averages {np.mean([len(f) for f in full]):.0f} tokens")
    print(table(rows, list(rows[0])))
    val = {} if a.model is None else {"model": model_words(a.model), "validation": validation_rows(cfg, a.model, a.val_cuts)}
    write(f"observation_budget_{a.preset}", {"records": a.records, "searches": len(searches),
                                             "answer_in_three_passages": float(in_full.mean()),
                                             "full_block_tokens": float(np.mean([len(f) for f in full])),
                                             "rows": rows, **val}, cfg)


if __name__ == "__main__":
    main()

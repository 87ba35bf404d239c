"""Greedy evaluation on the benchmark subsets: EM (the paper's metric), F1, searches, hit ratio."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from dgpo_lib.data.loaders import QAExample
from dgpo_lib.env.rollout import RolloutSettings, SearchEnv, Trajectory, run_batched
from dgpo_lib.generation import make_generator
from dgpo_lib.io_utils import atomic_path, atomic_write_json, provenance
from dgpo_lib.train.trajectories import write_records


def summarize_set(trajs: Sequence[Trajectory]) -> dict:
    n = max(len(trajs), 1)
    finishes: dict[str, int] = {}
    for t in trajs:
        finishes[t.finish] = finishes.get(t.finish, 0) + 1
    return {"n": len(trajs), "em": sum(t.em for t in trajs) / n, "f1": sum(t.f1 for t in trajs) / n,
            "searches": sum(t.n_searches for t in trajs) / n,
            "hit_ratio": sum(t.info_contains_answer() for t in trajs) / n,
            "answered": sum(t.answer is not None for t in trajs) / n,
            "model_tokens": sum(sum(t.action_mask) for t in trajs) / n, "finish": finishes}


def evaluate(model, tokenizer, retriever, eval_sets: dict[str, list[QAExample]], cfg, out_dir: Path | None = None,
             name: str = "", progress: bool = True, model_path: str | None = None) -> dict:
    """Run every eval set greedily; write per-question records and a summary (with provenance) if out_dir."""
    env = SearchEnv(make_generator(model, tokenizer, cfg, model_path), retriever, tokenizer,
                    RolloutSettings.from_config(cfg, greedy=True))
    # every set in one pass: a continuous generator refills its slots across sets instead of draining per set
    names = [ds for ds, qs in eval_sets.items() for _ in qs]
    trajs = run_batched(env, [q for qs in eval_sets.values() for q in qs], cfg.eval.batch_size,
                        desc=f"eval {name}", progress=progress)
    per_set = {}
    for ds in eval_sets:
        part = [t for t, n in zip(trajs, names) if n == ds]
        per_set[ds] = summarize_set(part)
        if out_dir is not None:
            write_records(Path(out_dir) / f"records_{ds}.jsonl", part)
    ems = [v["em"] for v in per_set.values()]
    summary = {"method": name, "per_set": per_set, "avg_em": sum(ems) / max(len(ems), 1),
               "timing": {**env.gen.stats, **env.stats}, "provenance": provenance(cfg)}
    if out_dir is not None:
        atomic_write_json(Path(out_dir) / "summary.json", summary)
    return summary


def copy_evaluation(src_dir: Path, out_dir: Path, name: str, same_as: str) -> dict:
    """Row `name`'s evaluation when its checkpoint holds exactly the weights of the already evaluated row `same_as`
    (greedy decoding of the same weights gives the same records): its records and summary, relabelled."""
    import json

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    for f in sorted(src_dir.glob("records_*.jsonl")):
        with atomic_path(out_dir / f.name) as dst:
            dst.write(f.read_text(encoding="utf-8"))
    summary = {**json.loads((src_dir / "summary.json").read_text()), "method": name, "same_weights_as": same_as}
    atomic_write_json(out_dir / "summary.json", summary)
    return summary

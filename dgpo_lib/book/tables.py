"""The results as tables: our EM per benchmark, the paper's beside it, learning curves and validation points, the
checkpoints RL selected, question groups and the protocol probe."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from dgpo_lib.book.claims import answer_bearing_sets
from dgpo_lib.book.display import table
from dgpo_lib.book.paper_numbers import PAPER_AVG, PAPER_SETS, PAPER_TABLE1
from dgpo_lib.data.loaders import display_name
from dgpo_lib.methods import METHODS, paper_row, row_label


def results_frame(res: dict, rows: Sequence[str] | None = None) -> pd.DataFrame:
    """Our EM: rows = methods, columns = the seven benchmarks + Avg."""
    rows = rows or list(res["em"])
    sets = res["eval_sets"]
    df = pd.DataFrame([[res["em"][r][s] for s in sets] + [res["avg_em"][r]] for r in rows],
                      index=[row_label(r) for r in rows], columns=[display_name(s) for s in sets] + ["Avg"])
    df.index.name = "method"
    return df


def paper_frame(rows: Sequence[str]) -> pd.DataFrame:
    """The paper's Table 1 for `rows` (a stand-in row, GKD from the SeqKD student, shows the paper's GKD)."""
    rows = list(dict.fromkeys(paper_row(r) for r in rows if paper_row(r) in PAPER_TABLE1))
    df = pd.DataFrame([PAPER_TABLE1[r] + [PAPER_AVG[r]] for r in rows], index=[row_label(r) for r in rows],
                      columns=[display_name(s) for s in PAPER_SETS] + ["Avg"])
    df.index.name = "method"
    return df


def comparison_frame(res: dict, rows: Sequence[str]) -> pd.DataFrame:
    """Average EM, ours beside the paper's (Qwen2.5 3B -> 0.5B, wiki-18), clearly labelled."""
    return pd.DataFrame({f"ours ({res['preset']} preset) avg EM": [res["avg_em"][r] for r in rows],
                         "paper avg EM (Qwen2.5 3B->0.5B)": [PAPER_AVG.get(paper_row(r), float("nan")) for r in rows]},
                        index=[row_label(r) for r in rows])


def curves_frame(metrics: dict[str, list[dict]], keys: Sequence[str]) -> pd.DataFrame:
    recs = []
    for name, rows in metrics.items():
        for r in rows:
            for k in keys:
                if k in r:
                    recs.append({"run": row_label(name), "step": r["step"], "metric": k, "value": r[k]})
    return pd.DataFrame(recs)


def val_table(val: dict[str, list[dict]]) -> pd.DataFrame:
    """Per run, from its validation curve: greedy EM before training, its best point (and step), the last point,
    and at the last point the searches per question and the share of episodes whose retrieved text held a gold
    answer (search worked) beside EM (the answer was read out)."""
    rows = []
    for name, v in val.items():
        if not v:
            continue
        best = max(v, key=lambda r: r["val_em"])
        rows.append({"run": row_label(name), "before training": v[0]["val_em"], "best": best["val_em"],
                     "at step": best["step"], "last": v[-1]["val_em"], "last step": v[-1]["step"],
                     "searches (last)": v[-1]["val_searches"], "answer retrieved (last)": v[-1].get("val_hit_ratio")})
    return pd.DataFrame(rows)


def selected_checkpoints(run, variants: Sequence[str]) -> pd.DataFrame:
    """Per RL run: the step selected on validation EM (its `selected.json`), its EM, and the last step's EM."""
    import json
    from pathlib import Path

    from dgpo_lib.io_utils import best_val_dir

    rows = []
    for v in variants:
        val = run.metrics(f"rl_{v}", "val_metrics.jsonl")
        chosen = best_val_dir(run.stage_dir(f"rl_{v}") / "model") / "selected.json"
        if not val or not Path(chosen).exists():
            continue
        best = json.loads(Path(chosen).read_text())
        rows.append({"run": row_label(v), "selected step": best["step"], "validation EM (selected)": best["val_em"],
                     "last step": val[-1]["step"], "validation EM (last)": val[-1]["val_em"]})
    return pd.DataFrame(rows)


def group_frame(res: dict, rows: Sequence[str]) -> pd.DataFrame:
    """Average EM over the paper's two groups of benchmarks, General QA (NQ, TriviaQA, PopQA) and Multi-hop QA
    (HotpotQA, 2Wiki, MuSiQue, Bamboogle), and, where a set has no answer-bearing passages in the corpus
    (TriviaQA at `cpu` scale), over the sets that have them."""
    general = [s for s in res["eval_sets"] if s.split("_")[0] in ("nq", "triviaqa", "popqa")]
    multi = [s for s in res["eval_sets"] if s not in general]
    bearing = answer_bearing_sets(res)

    def avg(r, sets):
        return sum(res["em"][r][s] for s in sets) / len(sets) if sets else float("nan")

    names = lambda sets: ", ".join(display_name(s) for s in sets)  # noqa: E731
    cols = {f"General QA ({names(general)})": general, f"Multi-hop QA ({names(multi)})": multi}
    if any(s.endswith("_ctx") for s in res["eval_sets"]) and len(bearing) < len(res["eval_sets"]):
        cols[f"answer-bearing sets ({names(bearing)})"] = bearing
    df = pd.DataFrame({c: [avg(r, sets) for r in rows] for c, sets in cols.items()}, index=[row_label(r) for r in rows])
    df.index.name = "method"
    return df


def probe_table(probe: pd.DataFrame):
    """`probes.protocol_frame` as the book shows it: a row per method, one column per kind of token."""
    from dgpo_lib.evaluation.probes import KINDS

    missing = ", ".join(row_label(r) for r in probe.attrs.get("missing") or [])
    if probe.empty:  # shown, not returned: a returned Markdown object also prints its repr in the chapter
        from IPython.display import Markdown, display
        display(Markdown(f"*No probe is kept with this run, and the trained weights that would compute one are not "
                         f"here* ({missing})."))
        return None
    left_out = f" Left out (no kept probe, no trained weights here): {missing}." if missing else ""
    df = probe[list(KINDS)].rename(index=row_label)
    return table(df, f"Mean probability each model gives the teacher's tokens, by kind, on "
                 f"{probe.attrs['n_trajectories']} of the teacher's correct trajectories for "
                 f"{probe.attrs['source']} (retrieved passages are context, never scored).{left_out}", "{:.3f}",
                 "method")


def settings_frame(cfg) -> pd.DataFrame:
    """The settings a reader needs to read the results (models, retrieval, protocol, data, budgets), one row each
    with the config key it comes from; the whole config is `config.describe`."""
    m, r, ro, d, kd, rl = cfg.models, cfg.retrieval, cfg.rollout, cfg.data, cfg.kd, cfg.rl
    per_set = ", ".join(f"{k} {v}" for k, v in d.n_eval_per_set.items())
    rows = [
        ("teacher", m.teacher, "models.teacher"),
        ("student", f"{m.student}, {m.student_layers} layers ({m.student_layer_choice}), healed {m.heal_steps} steps"
         if m.student_layers else m.student, "models.student*, models.heal_steps"),
        ("retrieval", f"{r.kind} ({r.encoder}, {r.index_type} index), top {r.topk}", "retrieval.*"),
        ("protocol", f"up to {ro.max_turns} turns of {ro.max_turn_tokens} tokens; <information> cut at "
         f"{ro.max_obs_tokens} tokens", "rollout.max_turns, max_turn_tokens, max_obs_tokens"),
        ("training questions", f"{d.n_train or 'all'} ({', '.join(d.train_sets)})"
         + (f", {d.n_val} of them held out for validation" if d.n_val else ""), "data.train_sets, n_train, n_val"),
        ("evaluation", f"{d.n_eval or 'all'} questions per set" + (f" ({per_set})" if per_set else "")
         + f", {len(d.eval_sets)} sets, greedy EM", "data.eval_sets, n_eval"),
        ("KD", f"{kd.steps} steps of {kd.batch_size} sequences", "kd.steps, kd.batch_size"),
        ("RL", f"{rl.steps} steps of {rl.prompts_per_step} prompts, DGPO's beta {rl.beta:g} (PPO's: Search-R1's "
                f"{METHODS['ppo'].rl.beta:g})", "rl.steps, prompts_per_step, beta"),
    ]
    return pd.DataFrame(rows, columns=["setting", "value", "config key"]).set_index("setting")

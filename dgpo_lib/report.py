"""Tables, figures and glued numbers for the notebooks: one consistent seaborn style, captions on every figure."""
from __future__ import annotations

import re
from typing import Sequence

import pandas as pd

from .data import display_name
from .paper_numbers import PAPER_AVG, PAPER_SETS, PAPER_TABLE1, row_label

_FIG_NO = [0]


def set_style():
    import matplotlib
    import seaborn as sns

    matplotlib.rcParams.update({"figure.dpi": 110, "savefig.bbox": "tight", "axes.titleweight": "bold"})
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def show(fig, caption: str):
    """Display a figure followed by its numbered caption (part of the executed output, so the book shows it)."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    _FIG_NO[0] += 1
    display(fig)
    plt.close(fig)
    display(Markdown(f"**Figure {_FIG_NO[0]}.** {caption}"))


def table(data, caption: str | None = None, fmt: str | dict | None = "{:.3f}", index: str | None = None):
    """A table as the book shows it: the row labels as a named first column (no unnamed pandas index), every
    cell in full (no "..." truncation), floats formatted, an optional caption above it.

    `data`: a DataFrame, a list of row dicts, or a {row: {column: value}} dict (rows become the first column,
    named `index`). `fmt`: a format string for the float columns, a {column: format} dict, or a function for
    every cell."""
    if isinstance(data, dict):
        data = pd.DataFrame(data).T
    df = pd.DataFrame(data)
    if not isinstance(df.index, pd.RangeIndex) or df.index.name or index:
        df = df.reset_index(names=index or df.index.name or "")
    df.columns = [str(c).replace("_", " ") for c in df.columns]  # headers wrap between words
    floats = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
    st = df.style.hide(axis="index")
    if callable(fmt):  # one function for every cell (tables whose columns mix kinds)
        st = st.format(fmt, na_rep="–")
    elif fmt:
        whole = {c for c in floats  # counts that went through floats (not scores that happen to be 0 or 1)
                 if df[c].dropna().apply(float.is_integer).all() and df[c].abs().max() >= 2}
        st = st.format(fmt if isinstance(fmt, dict) else {c: "{:,.0f}" if c in whole else fmt for c in floats},
                       na_rep="–")
    return st.set_caption(caption) if caption else st


def measured(v) -> str:
    """A measured figure at four significant digits (big counts in full), anything else as it is."""
    if isinstance(v, float) and v == v:
        return f"{v:,.0f}" if abs(v) >= 1e5 else f"{v:.4g}"
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def upright(df: pd.DataFrame, max_cols: int = 6) -> pd.DataFrame:
    """A table with many columns and few rows, turned so that it fits the page: one column per row of `df`
    (named by its text fields), one row per measured quantity."""
    if df.shape[1] <= max_cols or len(df) > max_cols:
        return df
    labels = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c]) or c in ("batch", "nprobe")]
    names = df[labels].astype(str).agg(" ".join, axis=1) if labels else df.index.astype(str)
    out = df.drop(columns=labels).T
    out.columns = list(names)
    out.index.name = "quantity"
    return out


def facts(d: dict, caption: str | None = None):
    """A {what: value} dict as a two-column table (instead of printing the dict), each value as `measured`."""
    return table(pd.DataFrame({"": list(d), "value": [measured(v) for v in d.values()]}), caption, fmt=None)


def glue(name: str, value, display: bool = False):
    """myst-nb glue (numbers in prose come from the run); a plain no-op outside Jupyter Book's toolchain."""
    try:
        from myst_nb import glue as _glue
        _glue(name, value, display=display)
    except ImportError:
        pass
    return value


def results_frame(res: dict, rows: Sequence[str] | None = None) -> pd.DataFrame:
    """Our EM: rows = methods, columns = the seven benchmarks + Avg."""
    rows = rows or list(res["em"])
    sets = res["eval_sets"]
    df = pd.DataFrame([[res["em"][r][s] for s in sets] + [res["avg_em"][r]] for r in rows],
                      index=[row_label(r) for r in rows], columns=[display_name(s) for s in sets] + ["Avg"])
    df.index.name = "method"
    return df


def paper_frame(rows: Sequence[str]) -> pd.DataFrame:
    rows = [r for r in rows if r in PAPER_TABLE1]
    df = pd.DataFrame([PAPER_TABLE1[r] + [PAPER_AVG[r]] for r in rows], index=[row_label(r) for r in rows],
                      columns=[display_name(s) for s in PAPER_SETS] + ["Avg"])
    df.index.name = "method"
    return df


def comparison_frame(res: dict, rows: Sequence[str]) -> pd.DataFrame:
    """Average EM, ours beside the paper's (Qwen2.5 3B -> 0.5B, wiki-18), clearly labelled."""
    return pd.DataFrame({f"ours ({res['preset']} preset) avg EM": [res["avg_em"][r] for r in rows],
                         "paper avg EM (Qwen2.5 3B->0.5B)": [PAPER_AVG.get(r, float("nan")) for r in rows]},
                        index=[row_label(r) for r in rows])


def curves_frame(metrics: dict[str, list[dict]], keys: Sequence[str]) -> pd.DataFrame:
    recs = []
    for name, rows in metrics.items():
        for r in rows:
            for k in keys:
                if k in r:
                    recs.append({"run": row_label(name), "step": r["step"], "metric": k, "value": r[k]})
    return pd.DataFrame(recs)


def plot_curves(metrics: dict[str, list[dict]], keys: Sequence[str], labels: dict[str, str], smooth: int = 1):
    """One panel per metric, one line per run; optional moving average (window `smooth`)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = curves_frame(metrics, keys)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, k in zip(axes[0], keys):
        d = df[df.metric == k].copy()
        if d.empty:
            ax.set_visible(False)
            continue
        if smooth > 1:
            d["value"] = d.groupby("run")["value"].transform(lambda s: s.rolling(smooth, min_periods=1).mean())
        sns.lineplot(data=d, x="step", y="value", hue="run", ax=ax, marker="o" if d.step.nunique() < 15 else None)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(labels.get(k, k))
        ax.legend(fontsize=8, title=None)
    fig.tight_layout()
    return fig


def plot_val_curves(val: dict[str, list[dict]]):
    """Validation-slice curves (greedy EM, searches per question) of several runs; None when none has one (a
    preset with `eval.val_every: 0`)."""
    val = {k: v for k, v in val.items() if v}
    if not val:
        print("no validation curves: this preset has eval.val_points = eval.val_every = 0, or data.n_val = 0")
        return None
    return plot_curves(val, ["val_em", "val_searches"], {"val_em": "validation EM (greedy)",
                                                         "val_searches": "searches per question"})


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

    from .rl import best_val_dir

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


def plot_em_bars(res: dict, rows: Sequence[str]):
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = results_frame(res, rows).drop(columns="Avg").reset_index().melt(id_vars="method", var_name="benchmark",
                                                                         value_name="EM")
    fig, ax = plt.subplots(figsize=(10, 3.8))
    sns.barplot(data=df, x="benchmark", y="EM", hue="method", ax=ax)
    ax.set_xlabel("benchmark")
    ax.set_ylabel("exact match (fraction of questions)")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    return fig


_WORD = re.compile(r"\w+")


def query_title_overlap(query: str, titles: Sequence[str]) -> float:
    """Share of a gold title's words found in the query (best gold title): how well a query targets evidence."""
    q = {w.lower() for w in _WORD.findall(query)}
    best = 0.0
    for t in titles:
        tw = {w.lower() for w in _WORD.findall(t)}
        if tw:
            best = max(best, len(q & tw) / len(tw))
    return best


def behaviour_frame(records: dict[str, dict[str, list[dict]]], gold_titles: dict[str, dict[str, list[str]]]):
    """Per method and question: EM, searches, query/gold-title overlap, answer length, hit (a retrieved block holds an
    answer). Two search counts: `searches` = queries the environment executed (this project's), `search_tags` = the
    `<search>` tags in the response, which is what the DGPO authors count (`decoded.count('<search>') - 1` over prompt
    and response: the -1 removes the prompt's own tag, and each invalid-action message adds one, so invalid turns
    count as searches)."""
    rows = []
    for method, per_set in records.items():
        for ds, recs in per_set.items():
            for r in recs:
                titles = gold_titles.get(ds, {}).get(r["id"], [])
                ov = [query_title_overlap(q, titles) for q in r["queries"]] if titles else []
                rows.append({"method": row_label(method), "benchmark": display_name(ds), "em": r["em"],
                             "searches": r["n_searches"], "search_tags": r["response"].count("<search>"),
                             "query_title_overlap": max(ov) if ov else float("nan"),
                             "answer_words": len((r["answer"] or "").split()) if r["answer"] is not None
                             else float("nan"),
                             "answered": r["answer"] is not None, "hit": r["info_contains_answer"]})
    return pd.DataFrame(rows)


def reading_frame(beh: pd.DataFrame) -> pd.DataFrame:
    """Per method (rows of `behaviour_frame`): episodes, the share whose retrieved text held a gold answer, and EM
    among those (reading the answer out) and among the rest (knowing it without the evidence)."""
    def part(g: pd.DataFrame) -> pd.Series:
        hit = g["hit"].astype(bool)
        return pd.Series({"episodes": len(g), "answer retrieved": hit.mean(),
                          "EM when retrieved": g.loc[hit, "em"].mean() if hit.any() else float("nan"),
                          "EM when not retrieved": g.loc[~hit, "em"].mean() if (~hit).any() else float("nan")})
    return pd.DataFrame({m: part(g) for m, g in beh.groupby("method", sort=False)}).T


def claims_frame(res: dict, n_boot: int = 5000) -> pd.DataFrame:
    """The paper's headline claims, each checked against this run's numbers (no judgement typed by hand).

    A comparison claim holds ("yes") only when the paired bootstrap interval of the difference (dgpo_lib/stats.py)
    lies above zero; a gap of a few questions is "within noise". Results files without per-question EM (older
    runs) get the point comparison alone."""
    from .kd import KD_METHODS
    from .stats import paired_bootstrap, verdict

    a = res["avg_em"]
    per_q = res.get("em_per_question", {})
    kd_rows = [r for r in KD_METHODS if r in a]
    rows = []

    def test(x, y, weight=1.0, sets=None) -> tuple[str, str, float]:
        """(difference with its interval, verdict, lower bound) of x - weight * y, averaged over `sets` (all)."""
        if x in per_q and y in per_q:
            keep = lambda d: {k: v for k, v in d.items() if sets is None or k in sets}  # noqa: E731
            b = paired_bootstrap(keep(per_q[x]), keep(per_q[y]), weight_b=weight, n_boot=n_boot)
            return f"{b['diff']:+.3f} [{b['lo']:+.3f}, {b['hi']:+.3f}]", verdict(b["diff"], b["lo"]), b["lo"]
        if sets is not None:
            return "no per-question data", "not tested", float("nan")
        diff = a[x] - weight * a[y]
        return f"{diff:+.3f} (no per-question data)", "yes" if diff > 0 else "no", diff

    def compare(claim, tested_as, x, y, weight=1.0, sets=None):
        ci, holds, _ = test(x, y, weight, sets)
        rows.append({"claim (paper)": claim, "tested here as": tested_as,
                     "ours": f"{row_label(x)} {a[x]:.3f} vs {row_label(y)} {a[y]:.3f}",
                     "difference [95% CI]": ci, "holds here": holds})

    if "student" in a:
        rows.append({"claim (paper)": "the untrained student scores ~0 EM (paper 0.006)",
                     "tested here as": "average EM < 0.05 (ours)", "ours": f"{a['student']:.3f}",
                     "difference [95% CI]": "", "holds here": "yes" if a["student"] < 0.05 else "no"})
    if "kd" in a and "ppo" in a:
        compare("KD cold start beats PPO alone (paper 0.298 vs 0.238)", "average EM, KD - PPO > 0", "kd", "ppo")
    if "dgpo" in a and kd_rows:
        # DGPO against each KD row; the claim is only as strong as its weakest comparison (the lowest bound)
        tests = {r: test("dgpo", r) for r in kd_rows}
        order = {"no": 0, "within noise": 1, "yes": 2}
        hardest = min(kd_rows, key=lambda r: tests[r][2])
        rows.append({"claim (paper)": "DGPO beats every KD baseline on average (paper 0.329 vs best 0.298)",
                     "tested here as": "average EM, DGPO - each KD row > 0; the weakest comparison decides",
                     "ours": f"DGPO {a['dgpo']:.3f}; tested against each of the {len(kd_rows)} KD rows, closest: "
                             f"{row_label(hardest)} {a[hardest]:.3f}",
                     "difference [95% CI]": tests[hardest][0],
                     "holds here": min((t[1] for t in tests.values()), key=order.get)})
    if "dgpo" in a and "teacher" in a:
        # the paper's words: DGPO outperforms the teacher on NQ, PopQA and HotpotQA
        sets = [s for s in res.get("eval_sets", []) if s.removesuffix("_ctx") in ("nq", "popqa", "hotpotqa")]
        if sets:
            compare("DGPO outperforms its teacher on NQ, PopQA and HotpotQA (paper's Table 1)",
                    "EM averaged over those three sets, DGPO - teacher > 0", "dgpo", "teacher", sets=sets)
        # "near" = at least 90% of the teacher (the paper's DGPO reaches 93%): test DGPO - 0.9 x teacher > 0
        compare("DGPO comes near the teacher on average (paper 0.329 vs 0.353: 93%)",
                "average EM, DGPO - 0.9 x teacher > 0 (ours: 'near' read as >= 90%)", "dgpo", "teacher", weight=0.9)
    if "dgpo" in a and "ppo" in a:
        compare("DGPO beats PPO (paper 0.329 vs 0.238)", "average EM, DGPO - PPO > 0", "dgpo", "ppo")
    return pd.DataFrame(rows)


def benchmark_tables(folder=None) -> dict:
    """{title: (DataFrame, note)} from the JSON files the benchmark scripts wrote."""
    import json
    from pathlib import Path

    from .data import REPO_ROOT

    folder = Path(folder or REPO_ROOT / "benchmarks" / "results")
    out = {}
    for p in sorted(folder.glob("*.json")):
        d = json.loads(p.read_text())
        prov = d.get("provenance", {})
        note = f"{p.name}, preset {prov.get('preset')}, {prov.get('machine', {}).get('cpus')} CPU cores, " \
               f"{prov.get('created')}"
        # the first list of records the script wrote ("rows" is a count in some scripts, not a table)
        records = next((d[k] for k in ("rows", "stages", "results") if isinstance(d.get(k), list)), None)
        if records is None:
            continue
        df = pd.DataFrame(records).round(4)
        if p.stem.startswith("compare_runs"):  # the columns that say whether a rerun reproduced each stage
            # (EM on the same questions, to 3 places as in the results tables; not the validation EM, since runs of
            # different code may validate on other slices; "identical" is equal == of)
            df = df[[c for c in ("stage", "what", "equal", "of", "em_a", "em_b", "loss_max_abs_diff", "work_s_a",
                                 "work_s_b") if c in df]].round({"em_a": 3, "em_b": 3, "loss_max_abs_diff": 3})
        out[p.stem] = (df, note)
    return out


def profile_tables(preset: str = "cpu", folder=None) -> list[tuple[pd.DataFrame, str]]:
    """(operators table, caption) for each step benchmarks/profile_step.py profiled."""
    prof = benchmark_json(f"profile_{preset}", folder)
    if not prof:
        return []
    names = {"kd_steps": "two KD steps (teacher forward, student forward and backward, forward KL, AdamW)",
             "student_decode": "the student's continuous generator: a prefill of 32 rows x 300 tokens (in groups "
                               "of 8), then decode steps over the 32 rows"}
    out = []
    for key, what in names.items():
        r = prof.get(key)
        if r:
            df = pd.DataFrame(r["operators"])[["operator", "calls", "self_s", "share_of_wall"]]
            out.append((df, f"Operators by self time in {what}: {r['wall_s']:.2f} s of wall time, "
                            f"{r['outside_operators_share']:.0%} of it outside every operator (Python, framework "
                            f"and profiler overhead)."))
    return out


def benchmark_json(name: str, folder=None) -> dict | None:
    """What benchmark script `name` (e.g. `training_cpu`) last wrote to benchmarks/results/ (or `folder`), or None."""
    import json
    from pathlib import Path

    from .data import REPO_ROOT
    p = Path(folder or REPO_ROOT / "benchmarks" / "results") / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def performance_targets(preset: str = "cpu", folder=None) -> pd.DataFrame:
    """The performance targets against what the benchmark scripts measured (rows only for results that exist)."""
    rows = []

    def add(target, measured, met):
        rows.append({"target": target, "measured": measured, "met": "yes" if met else "no"})

    ro = benchmark_json(f"rollout_{preset}", folder)
    if ro:
        for r in ro["rows"]:
            if r["generator"] in ("kv", "continuous") and r["batch"] > 1:
                # share of the decode slots that produced a token. Lock step ("kv"): rows that end their turn early
                # wait for the longest one; continuous batching refills them. Each turn's first token comes from
                # its prefill, so a fully used batch reads slightly above 100%
                slots = r.get("decode_slots") or (r["decode_steps"] * r["batch"] if r.get("decode_steps") else 0)
                use = f"; {r['generated_tokens'] / slots:.0%} of decode slots used" if slots else ""
                add(f"{r['model']}: batched rollouts >= 5x one question at a time ({r['generator']}, batch "
                    f"{r['batch']})", f"{r['speedup_vs_single']:.1f}x ({r['questions_per_s']:.2f} questions/s{use})",
                    r["speedup_vs_single"] >= 5)
        for m in {r["model"] for r in ro["rows"]}:
            kv = [r for r in ro["rows"] if r["model"] == m and r["generator"] == "kv" and r["batch"] > 1]
            hf = [r for r in ro["rows"] if r["model"] == m and r["generator"] == "hf" and r["batch"] > 1]
            if kv and hf:
                x = kv[0]["questions_per_s"] / hf[0]["questions_per_s"]
                add(f"{m}: KV cache kept across turns pays (vs HF generate, same batch)", f"{x:.2f}x questions/s",
                    x > 1)
        for r in ro["rows"]:
            if r["generator"] == "continuous" and r.get("outside_forward_share") is not None:
                add(f"{r['model']}: time outside the forward passes < 10% of a rollout (continuous)",
                    f"{r['outside_forward_share']:.0%}", r["outside_forward_share"] < 0.1)
                add(f"{r['model']}: prefill >= 50% of the bf16 GEMM rate (continuous)",
                    f"{r['prefill_share_of_gemm']:.0%}", r["prefill_share_of_gemm"] >= 0.5)
    ds = benchmark_json(f"decode_step_{preset}", folder)
    if ds:
        for r in ds["rows"]:
            add(f"{r['model']}: decode step within 1.3x of a bare StaticCache loop ({r['rows']} rows, "
                f"{r['context']}-token context)", f"{r['continuous_over_static']:.2f}x ({r['continuous_ms']:.1f} vs "
                f"{r['static_cache_ms']:.1f} ms)", r["continuous_over_static"] <= 1.3)
    tr = benchmark_json(f"training_{preset}", folder)
    if tr:
        for r in tr["rows"]:
            if r.get("mfu") is not None:
                add(f"{r['step']}: >= 50% of the bf16 GEMM rate in linear-layer FLOPs (MFU)", f"{r['mfu']:.0%}",
                    r["mfu"] >= 0.5)
        pad = tr["padding_share"]["bucketed"]
        add("padding < 20% of computed tokens in training batches (length buckets)",
            f"{pad:.1%} (arrival order: {tr['padding_share']['arrival_order']:.1%})", pad < 0.2)
    pm = benchmark_json(f"peak_memory_{preset}", folder)
    if pm:
        for r in pm["rows"]:
            if r["micro_batch"] == pm["preset_micro_batch"]:
                add(f"teacher SFT step <= 12 GiB at the preset's micro-batch ({r['micro_batch']} of {r['batch']}, "
                    f"longest oracle batch)", f"{r['peak_rss_gib']:.2f} GiB", r["peak_rss_gib"] <= 12)
    e2e = benchmark_json(f"end_to_end_{preset}", folder)
    if e2e:
        work = lambda r: r.get("work_s", r["wall_s"])  # noqa: E731  (older files have no pauses recorded)
        budget = _budget_words(e2e["budget_s"])
        worst = max(e2e["stages"], key=work) if e2e["stages"] else None
        if worst:
            add(f"no stage above 40% of the {budget} budget",
                f"largest: {worst['stage']} {work(worst) / 60:.1f} min ({work(worst) / e2e['budget_s']:.0%})",
                work(worst) / e2e["budget_s"] <= 0.4)
        if e2e.get("main_job_wall_s"):
            how = " (stages run one by one, summed, + the parts timed around them)" if e2e.get("stages_before_notebooks") else ""
            add(f"main job within the {budget} budget", f"{e2e['main_job_wall_s'] / 60:.1f} min{how}",
                e2e["main_job_wall_s"] <= e2e["budget_s"])
        if e2e.get("without_training_s") is not None:
            # evaluation's size is fixed by the protocol (rows x questions x turns); training gets what is left
            room, train = e2e["budget_s"] - e2e["without_training_s"], e2e["by_kind"]["training"]
            add(f"room in the {budget} budget for the training stages",
                f"the main job less its training: {e2e['without_training_s'] / 60:.1f} min, leaving "
                f"{room / 60:.1f} min for the {train['stages']} training stages, which took {train['work_s'] / 60:.1f}",
                room >= train["work_s"])
        if e2e.get("peak_rss_gib"):
            add("peak memory <= 12 GiB", f"{e2e['peak_rss_gib']:.2f} GiB", e2e["peak_rss_gib"] <= 12)
    return pd.DataFrame(rows, columns=["target", "measured", "met"])


def _budget_words(seconds: float) -> str:
    """8 hours -> "8-hour", 90 minutes -> "90-minute"."""
    return f"{seconds / 3600:.0f}-hour" if seconds % 3600 == 0 else f"{seconds / 60:.0f}-minute"


def stage_kind(stage: str) -> str:
    """"evaluation" for the eval_* stages, whose size the protocol fixes; "training" for every other stage (they
    train or generate training data, and their size is the training budget)."""
    return "evaluation" if stage.startswith("eval_") else "training"


def plot_stage_times(preset: str = "cpu", folder=None):
    """Horizontal bars: minutes of work per stage (benchmarks/end_to_end.py), the run's budget marked."""
    import matplotlib.pyplot as plt

    e2e = benchmark_json(f"end_to_end_{preset}", folder)
    if not e2e or not e2e["stages"]:
        return None
    rows = sorted(e2e["stages"], key=lambda r: r.get("work_s", r["wall_s"]))
    mins = [r.get("work_s", r["wall_s"]) / 60 for r in rows]
    colour = {"evaluation": "tab:orange", "training": "tab:blue", "setup, index, notebooks, book": "tab:gray"}
    kind = lambda r: stage_kind(r["stage"])  # noqa: E731
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 0.28 * len(rows) + 1.2), gridspec_kw={"width_ratios": [3, 1]})
    ax.barh([r["stage"] for r in rows], mins, color=[colour[kind(r)] for r in rows])
    ax.set_xlabel("minutes of work (wall time less recorded pauses)")
    # the parts of a one-pass main job stacked against the budget
    parts = {k: sum(m for r, m in zip(rows, mins) if kind(r) == k) for k in ("evaluation", "training")}
    if e2e.get("main_job_wall_s") and e2e.get("stages_before_notebooks"):
        parts["setup, index, notebooks, book"] = e2e["main_job_wall_s"] / 60 - sum(parts.values())
    bottom = 0.0
    for k, m in parts.items():
        ax2.bar(["main job"], [m], bottom=bottom, color=colour[k], label=k)
        bottom += m
    ax2.axhline(e2e["budget_s"] / 60, color="tab:red", ls="--", label=f"{_budget_words(e2e['budget_s'])} budget")
    ax2.set_ylabel("minutes")
    ax.legend(*ax2.get_legend_handles_labels(), loc="lower right", fontsize=8)  # the left panel has room for it
    fig.tight_layout()
    return fig


def plot_rollout_throughput(preset: str = "cpu", folder=None):
    """Bar chart of rollout questions/s per model and generator (benchmarks/rollout.py)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    ro = benchmark_json(f"rollout_{preset}", folder)
    if not ro:
        return None
    df = pd.DataFrame(ro["rows"])
    df["variant"] = df.apply(lambda r: f"{r['generator']}, batch {r['batch']}", axis=1)
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    sns.barplot(data=df, x="model", y="questions_per_s", hue="variant", ax=ax)
    ax.set_xlabel("model")
    ax.set_ylabel("questions per second")
    return fig


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


def answer_bearing_sets(res: dict) -> list[str]:
    """The benchmarks whose questions have answer-bearing passages in the corpus (`_ctx` sets, Bamboogle)."""
    return [s for s in res["eval_sets"] if s.endswith("_ctx") or s == "bamboogle"]


def targets_frame(res: dict, n_boot: int = 5000) -> pd.DataFrame:
    """The miniature's goals, each measured on this run's answer-bearing benchmarks with a 95% paired-bootstrap
    interval over the evaluation questions (dgpo_lib/stats.py): a teacher that searches well (>= 0.35), an
    untrained student near zero (<= 0.05), a KD baseline reaching half the teacher, DGPO's RL stage moving its
    cold start by a margin the interval can see (either way; the final RL checkpoint against the KD cold start),
    and every row's average known to +-0.03. Rows the results file lacks are skipped."""
    from .kd import KD_METHODS
    from .stats import paired_bootstrap

    per_q, sets = res["em_per_question"], answer_bearing_sets(res)
    on = lambda r: {s: per_q[r][s] for s in sets}  # noqa: E731

    def against(r, other, weight=1.0) -> dict:
        return paired_bootstrap(on(r), on(other), weight_b=weight, n_boot=n_boot)

    def ci(b: dict, sign: str = "") -> str:
        return f"{b['diff']:{sign}.3f} [{b['lo']:{sign}.3f}, {b['hi']:{sign}.3f}]"

    # each row's average with its interval: the bootstrap of the row against a row of zeros, computed once
    alone = {r: paired_bootstrap(on(r), {s: [0.0] * len(v) for s, v in on(r).items()}, n_boot=n_boot)
             for r in per_q}
    rows = []

    def add(goal, target, measured, met):
        rows.append({"goal": goal, "target": target, "measured [95% CI]": measured, "met": "yes" if met else "no"})

    if "teacher" in alone:
        add("a teacher that searches well", "average EM >= 0.35", ci(alone["teacher"]), alone["teacher"]["diff"] >= 0.35)
    if "student" in alone:
        add("the untrained student near zero", "average EM <= 0.05", ci(alone["student"]),
            alone["student"]["diff"] <= 0.05)
    kd_rows = [r for r in KD_METHODS if r in per_q]
    if kd_rows and "teacher" in per_q:
        best = max(kd_rows, key=lambda r: alone[r]["diff"])
        b = against(best, "teacher", 0.5)
        add("the best KD baseline reaches half the teacher", "EM(best KD) - 0.5 x EM(teacher) >= 0",
            f"{row_label(best)}: {ci(b, '+')}", b["diff"] >= 0)
    final = next((r for r in ("dgpo@final", "dgpo") if r in per_q), None)
    if final and "kd" in per_q:
        b = against(final, "kd")
        add("DGPO's RL stage moves its cold start", "the 95% interval of EM(DGPO) - EM(KD) excludes 0",
            f"{row_label(final)} - KD: {ci(b, '+')}", b["lo"] > 0 or b["hi"] < 0)
    if alone:
        half = {r: (b["hi"] - b["lo"]) / 2 for r, b in alone.items()}
        widest = max(half, key=half.get)
        add("every row's average known to +-0.03", "95% interval half-width <= 0.03",
            f"widest: {row_label(widest)} +-{half[widest]:.3f}", half[widest] <= 0.03)
    return pd.DataFrame(rows)


def probe_table(probe: pd.DataFrame):
    """`probes.protocol_frame` as the book shows it: a row per method, one column per kind of token."""
    from .probes import KINDS

    missing = ", ".join(row_label(r) for r in probe.attrs.get("missing") or [])
    if probe.empty:
        from IPython.display import Markdown
        return Markdown(f"*No probe is kept with this run, and the trained weights that would compute one are not "
                        f"here* ({missing}).")
    left_out = f" Left out (no kept probe, no trained weights here): {missing}." if missing else ""
    df = probe[list(KINDS)].rename(index=row_label)
    return table(df, f"Mean probability each model gives the teacher's tokens, by kind, on "
                 f"{probe.attrs['n_trajectories']} of the teacher's correct trajectories for "
                 f"{probe.attrs['source']} (retrieved passages are context, never scored).{left_out}", "{:.3f}",
                 "method")

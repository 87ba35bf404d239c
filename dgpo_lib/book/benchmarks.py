"""The benchmark scripts' JSON as the performance chapter shows it: tables, profiles, targets, stage times and rollout
throughput."""
from __future__ import annotations

import pandas as pd


def benchmark_tables(folder=None) -> dict:
    """{title: (DataFrame, note)} from the JSON files the benchmark scripts wrote."""
    import json
    from pathlib import Path

    from dgpo_lib.data.loaders import REPO_ROOT

    folder = Path(folder or REPO_ROOT / "benchmarks" / "results")
    out = {}
    for p in sorted(folder.glob("*.json")):
        d = json.loads(p.read_text())
        prov = d.get("provenance", {})
        note = f"{p.name}, preset {prov.get('preset')}, {machine_words(prov.get('machine', {}))}, {prov.get('created')}"
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
             "rl_step": "one DGPO step (sampled rollouts, the actor's, teacher's and critic's forward passes, "
                        "the actor's and critic's updates)",
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
        if r and r.get("phases"):
            out.append((rl_phase_table(r), f"The DGPO step by phase: {r['step_s']:.1f} s for {r['rollouts']} "
                                           f"rollouts of {r['sequence_tokens']:,} tokens in all."))
    return out


def machine_words(m: dict) -> str:
    """A results file's machine in words: cores, CPU model and whether it has bfloat16 hardware (older files: cores)."""
    words = [f"{m.get('cpus')} CPU cores"]
    if m.get("cpu_model"):
        words.append(m["cpu_model"])
    if m.get("cpu_native_bf16") is not None:
        words.append("bfloat16 in hardware" if m["cpu_native_bf16"] else "no bfloat16 hardware")
    if m.get("gpu"):
        words.append(m["gpu"])
    return ", ".join(words)


RL_PROFILE = "results/experiments/profile_rl_step_avx2"  # the profiled DGPO step (benchmarks/profile_step.py)


def rl_step_profile(folder=None) -> tuple[list[tuple[pd.DataFrame, str]], str]:
    """The profiled DGPO step's phase and operator tables, and a reading of where its time goes ("" without the
    file): the rollout, the forward passes that score it, the two updates, and the update's tokens per second."""
    from dgpo_lib.data.loaders import REPO_ROOT
    prof = benchmark_json("profile_cpu", folder or REPO_ROOT / RL_PROFILE)
    r = (prof or {}).get("rl_step")
    if not r or not r.get("phases"):
        return [], ""
    s = {p["phase"]: p["s"] for p in r["phases"]}
    share = lambda *ks: sum(s.get(k, 0.0) for k in ks) / r["step_s"]  # noqa: E731
    update_s = r["step_s"] - s.get("rollout", 0.0)
    ops = {o["operator"]: o["share_of_wall"] for o in r["operators"]}
    mm = sum(v for k, v in ops.items() if k in ("aten::mm", "aten::bmm", "aten::addmm"))
    attn = sum(v for k, v in ops.items() if "attention" in k)
    where = machine_words(prof.get("provenance", {}).get("machine", {}))
    tables = [(rl_phase_table(r), f"One DGPO step by phase: {r['step_s']:.0f} s for {r['rollouts']:.0f} rollouts of "
                                  f"{r['sequence_tokens']:,.0f} tokens in all ({where}, {prof.get('threads', '?')} "
                                  "threads)."),
              (pd.DataFrame(r["operators"])[["operator", "calls", "self_s", "share_of_wall"]],
               f"The same step's operators by self time, as shares of the {r['wall_s']:.0f} s the profiler ran.")]
    reading = (f"The rollout takes {share('rollout'):.0%} of the step; the forward passes that score it take "
               f"{share('actor_logprobs', 'reference_logprobs', 'values'):.0%} (the actor's log-probs "
               f"{share('actor_logprobs'):.0%}, the teacher's on the wrong trajectories "
               f"{share('reference_logprobs'):.0%}, the critic's values {share('values'):.0%}); the actor's update "
               f"{share('actor_update'):.0%}, the critic's {share('critic_update'):.0%} and the optimiser "
               f"{share('optimiser'):.0%}. Matrix multiplications take {mm:.0%} of the profiled time and attention "
               f"{attn:.0%}. Without its rollout the step processed {r['sequence_tokens'] / update_s:.0f} tokens/s on "
               f"this machine ({where}). The stand-in student wrote {r['response_tokens_per_rollout']:.0f} tokens a "
               "rollout and was trained by no KD: with a trained student the rollout's share changes with the "
               "length of what it writes, and the teacher's with how many of its trajectories are wrong, since the "
               "teacher scores only those.")
    return tables, reading


def rl_phase_table(r: dict) -> pd.DataFrame:
    """Seconds and share of the step per phase of a profiled RL step, with the time no phase covers as a row."""
    df = pd.DataFrame(r["phases"])[["phase", "s", "share_of_step"]]
    rest = r["step_s"] - df["s"].sum()
    df.loc[len(df)] = {"phase": "other (batching, advantages, logging)", "s": rest, "share_of_step": rest / r["step_s"]}
    return df.round({"s": 2, "share_of_step": 3})


def gemm_rate(tr: dict) -> tuple[float, str]:
    """The GEMM rate a training benchmark's MFU is measured against, and its dtype's short name: the models' compute
    dtype (files written before it was recorded measured bf16)."""
    dtype = tr.get("gemm_dtype", "bfloat16")
    return tr.get("gemm_flops", tr.get("gemm_bf16_flops")), {"bfloat16": "bf16", "float32": "fp32"}.get(dtype, dtype)


def benchmark_json(name: str, folder=None) -> dict | None:
    """What benchmark script `name` (e.g. `training_cpu`) last wrote to benchmarks/results/ (or `folder`), or None."""
    import json
    from pathlib import Path

    from dgpo_lib.data.loaders import REPO_ROOT
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
                add(f"{r['step']}: >= 50% of the {gemm_rate(tr)[1]} GEMM rate in linear-layer FLOPs (MFU)",
                    f"{r['mfu']:.0%}", r["mfu"] >= 0.5)
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
                f"{room / 60:.1f} min for the {train['stages']} training stages, which took "
                f"{train['work_s'] / 60:.1f} min",
                room >= train["work_s"])
        if e2e.get("peak_rss_gib"):
            add("peak memory <= 12 GiB", f"{e2e['peak_rss_gib']:.2f} GiB", e2e["peak_rss_gib"] <= 12)
    return pd.DataFrame(rows, columns=["target", "measured", "met"])


def _budget_words(seconds: float) -> str:
    """8 hours -> "8-hour", 90 minutes -> "90-minute"."""
    return f"{seconds / 3600:.0f}-hour" if seconds % 3600 == 0 else f"{seconds / 60:.0f}-minute"


def cost_table(preset: str = "cpu", folder=None) -> tuple[pd.DataFrame, str] | None:
    """benchmarks/cost_table.py's rows as a table (minutes of work and peak memory per stage, before and after,
    preflight's estimate beside the new peak) and a caption naming both machines and the totals; None without it."""
    ct = benchmark_json(f"cost_table_{preset}", folder)
    if not ct:
        return None
    df = pd.DataFrame(ct["rows"])
    df["after_min"] = [f"{m:.1f}" + (" (projected)" if p else "") if pd.notna(m) else "" for m, p in
                       zip(df["after_min"], df["projected"])]
    df = df[["stage", "before_min", "after_min", "before_peak_gib", "after_peak_gib", "estimate_gib",
             "estimate_over_measured"]].rename(columns={
                 "before_min": "before, min", "after_min": "after, min", "before_peak_gib": "before, peak GiB",
                 "after_peak_gib": "after, peak GiB", "estimate_gib": "preflight estimate GiB",
                 "estimate_over_measured": "estimate / after peak"})
    df = df.astype(object).where(pd.notna(df), "")  # a figure a run does not have is an empty cell, never "nan"
    t, a = ct["totals_min"], ct["after"]
    caption = (f"Minutes of work and peak memory per stage, before (commit {ct['before']['commit']}: "
               f"{ct['before']['machine']}) and after ({a['machine']}; {a['finished']} of {a['stages']} stages "
               f"finished, the others projected from the before-run's cost at the median ratio of the finished stages "
               f"of their kind). The results table's stages: {t['table']['before']:.0f} min before, "
               f"{t['table']['after']:.0f} after" + (f" ({t['table']['unpriced']} of them not priced)"
                                                     if t["table"].get("unpriced") else "")
               + f", against a budget of {ct['budget_min']:.0f} min.")
    return df, caption


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
    ax.set_xlabel("minutes of work (machine time used)")
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

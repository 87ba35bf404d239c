"""What the learning curves and the benchmarks say, in sentences computed from them (the chapters show these under
their plots and tables, so the prose about a run always matches that run's numbers)."""
from __future__ import annotations

from typing import Sequence

from dgpo_lib.methods import row_label


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _span(values: Sequence[float], fmt) -> str:
    lo, hi = min(values), max(values)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}-{fmt(hi)}"


def val_bullets(val: dict[str, list[dict]]) -> dict[str, str]:
    """What validation curves (rows of `val_metrics.jsonl`, one list per run) say, one sentence each, by topic:
    `ranking` (best greedy EM, at step), `rising` (whether the best came late or early), `protocol` (searches,
    answered) and `finding` (finding a gold answer in the retrieved text against reading it out), when known."""
    val = {k: v for k, v in val.items() if v}
    if not val:
        return {}
    best = {k: max(v, key=lambda r: r["val_em"]) for k, v in val.items()}
    order = sorted(val, key=lambda k: -best[k]["val_em"])
    out = {"ranking": "**Ranking on the validation slice** (best greedy EM, at step): " + "; ".join(
        f"{row_label(k)} {best[k]['val_em']:.3f} (step {best[k]['step']}, last {val[k][-1]['val_em']:.3f})"
        for k in order) + "."}
    late = [k for k in val if best[k]["step"] > 2 * val[k][-1]["step"] / 3]
    early = [k for k in val if k not in late]
    if late:
        out["rising"] = (f"**Still rising?** {len(late)} of {len(val)} runs reach their best in the last third of "
                         f"training ({', '.join(row_label(k) for k in late)})"
                         + (f"; {', '.join(row_label(k) for k in early)} peaked earlier." if early else "."))
    else:
        out["rising"] = "**Still rising?** No: every run peaked in the first two thirds of its training."
    last = [v[-1] for v in val.values()]
    out["protocol"] = (f"**The protocol** at the last point: "
                       f"{_span([r['val_searches'] for r in last], '{:.2f}'.format)} searches per question, "
                       f"{_span([r['val_answered'] for r in last], _pct)} of episodes end in an `<answer>`.")
    finding = finding_vs_reading({k: v[-1] for k, v in val.items()})
    if finding:
        out["finding"] = finding.removeprefix("- ")  # finding_vs_reading gives a list item of its own
    return out


def val_reading(val: dict[str, list[dict]]) -> str:
    """`val_bullets` as the Markdown list the chapters show under their validation curves."""
    return "\n".join(f"- {b}" for b in val_bullets(val).values())


def finding_vs_reading(last: dict[str, dict]) -> str | None:
    """A bullet comparing, run by run, how often a retrieved passage held a gold answer with how often the answer
    was written out (EM), at each run's last validation point. Runs that never search are named apart: they have
    nothing retrieved to read, so their 0% found says nothing about reading."""
    rows = {k: r for k, r in last.items() if r.get("val_hit_ratio") is not None}
    if not rows:
        return None
    searching = {k: r for k, r in rows.items() if r.get("val_searches", 0) > 0}
    silent = [row_label(k) for k in rows if k not in searching]
    never = (f" {', '.join(silent)} never searched, so had nothing retrieved to read." if silent else "")
    if not searching:
        return "- **Finding vs reading**: no run searched at its last validation point." + never
    hits = [r["val_hit_ratio"] for r in searching.values()]
    ems = [r["val_em"] for r in searching.values()]
    more = [k for k, r in searching.items() if r["val_hit_ratio"] >= 2 * r["val_em"]
            and r["val_hit_ratio"] - r["val_em"] >= 0.05]
    head = (f"- **Finding vs reading** (last validation point): in the runs that search, a retrieved passage held a "
            f"gold answer in {_span(hits, _pct)} of episodes, while their EM was {_span(ems, '{:.3f}'.format)}; ")
    if len(more) == len(searching):
        verdict = ("each finds the answer at least twice as often as it writes it out." if len(more) > 1
                   else "it finds the answer at least twice as often as it writes it out.")
    elif more:
        verdict = (f"{', '.join(row_label(k) for k in more)} find{'s' if len(more) == 1 else ''} it at least twice as "
                   f"often as {'it writes' if len(more) == 1 else 'they write'} it out, the others read out more "
                   f"than half of what they find.")
    else:
        verdict = "each reads out more than half of what it finds."
    return head + verdict + never


def rewarded_rollouts(curve: list[dict]) -> tuple[int, int]:
    """(sampled training rollouts that earned a reward, all of them) over an RL run's steps: the signal PPO has."""
    return round(sum(r["em"] * r["rollouts"] for r in curve)), round(sum(r["rollouts"] for r in curve))


def rl_reading(curves: dict[str, list[dict]], val: dict[str, list[dict]]) -> str:
    """Markdown bullets reading RL runs: how many sampled training rollouts earned a reward (the signal PPO has to
    follow), the KL to the teacher from first to last step, and validation EM from step 0 to the best and last."""
    out = []
    for k, c in curves.items():
        if not c:
            continue
        rewarded, total = rewarded_rollouts(c)
        line = (f"- **{row_label(k)}**: {rewarded} of {total} sampled training rollouts earned a reward "
                f"({_pct(rewarded / total)}); KL to the teacher {c[0]['kl_teacher']:.2f} -> {c[-1]['kl_teacher']:.2f} "
                "nats per token")
        v = val.get(k) or []
        if v:
            b = max(v, key=lambda r: r["val_em"])  # the earliest of equal bests, as the checkpoint selection keeps
            if all(r["val_em"] == b["val_em"] for r in v):
                line += f"; validation EM {b['val_em']:.3f} at every point"
            else:
                line += (f"; validation EM {v[0]['val_em']:.3f} at step 0, best {b['val_em']:.3f} at step "
                         f"{b['step']}, last {v[-1]['val_em']:.3f}")
            if b["step"] == 0:
                line += (", so the selected checkpoint is the model RL started from, and its row in the table is "
                         "that model's")
        out.append(line + ".")
    return "\n".join(out + start_reading({k: val[k] for k in curves if val.get(k)}))


def start_reading(val: dict[str, list[dict]]) -> list[str]:
    """A bullet for RL runs that the config starts from the same model but whose step-0 validation differs: the
    same weights validate identically (greedy, same questions), so they started from different trainings of that
    model, and each is read against its own step 0."""
    from dgpo_lib.methods import method
    groups: dict[str, list[str]] = {}
    for k, v in val.items():
        if v and v[0]["step"] == 0:
            groups.setdefault(method(k).start, []).append(k)
    out = []
    for start, runs in groups.items():
        firsts = {k: (val[k][0]["val_em"], val[k][0].get("val_searches")) for k in runs}
        if len(set(firsts.values())) > 1:
            model = "the KD cold start" if start == "kd" else "the untrained student"
            names = [row_label(k) for k in runs]
            who = f"{names[0]} and {names[1]} both" if len(names) == 2 else f"{', '.join(names)} all"
            out.append(f"- **Not the same start:** {who} start from {model}, "
                       "but their step-0 validation differs (" + "; ".join(
                           f"{row_label(k)} EM {em:.3f}" + (f", {se:.2f} searches" if se is not None else "")
                           for k, (em, se) in firsts.items()) + "). The same weights validate identically, so "
                       "they started from different trainings of it: read each against its own step 0.")
    return out


def probe_reading(probe, reference: str = "teacher") -> str:
    """Markdown bullets reading `probes.protocol_frame` (rows = the runs' names, `reference` among them): which
    models give a tag little probability where the teacher writes it (greedy decoding then never writes it), and
    how far below the reference each puts the answer's words."""
    if reference not in probe.index or len(probe) < 2:
        return ""
    ref = probe.loc[reference]
    others = [r for r in probe.index if r != reference]
    out = []
    for kind, what in (("opens a search", "search"), ("opens the answer", "answer")):
        low = [r for r in others if probe.loc[r, kind] < 0.5]
        if low:
            out.append(f"- **The `<{what}>` tag below one half** where the {row_label(reference).lower()} writes "
                       f"it ({ref[kind]:.3f}): " + ", ".join(f"{row_label(r)} ({probe.loc[r, kind]:.3f})" for r in low)
                       + ". Greedy decoding rarely writes a tag that is not the most probable token.")
    words = sorted(others, key=lambda r: -probe.loc[r, "answer words"])
    out.append(f"- **Reading the answer out:** the {row_label(reference).lower()} gives the answer's words "
               f"{ref['answer words']:.3f} per token; " + "; ".join(
                   f"{row_label(r)} {probe.loc[r, 'answer words']:.3f}" for r in words) + ".")
    return "\n".join(out)


def performance_reading(bench: dict[str, dict | None]) -> str:
    """Markdown bullets on what bounds the measured rates, from the benchmark scripts' JSON (`training`, `profile`,
    `rollout`; any may be None): each training step's model-FLOPs utilisation against where a profiled KD step
    spends its time, and a rollout's time outside the forward passes and its prefill rate."""
    from dgpo_lib.book.benchmarks import gemm_rate

    out = []
    tr, prof, ro = bench.get("training"), bench.get("profile"), bench.get("rollout")
    mfu = {r["step"]: r["mfu"] for r in (tr or {}).get("rows", [])  # this library's steps (not the TRL peer)
           if r.get("mfu") is not None and not r["step"].startswith("TRL")}
    if mfu:
        low = [s for s, m in mfu.items() if m < 0.5]
        rate, dtype = gemm_rate(tr)
        line = (f"- **Training** runs at {_span(list(mfu.values()), _pct)} of the {dtype} GEMM rate measured in the "
                f"same run ({rate / 1e9:.0f} GFLOP/s), counting linear layers' FLOPs only; "
                + (f"{len(low)} of {len(mfu)} steps are under 50%." if low else "every step reaches 50%."))
        kd = (prof or {}).get("kd_steps")
        if kd and low:
            share = {o["operator"]: o["share_of_wall"] for o in kd["operators"]}
            mm = sum(v for k, v in share.items() if k in ("aten::mm", "aten::bmm", "aten::addmm"))
            attn = sum(v for k, v in share.items() if "attention" in k)
            line += (f" A profiled KD step says why: matrix multiplications take {_pct(mm)} of its time, attention "
                     f"{_pct(attn)} (forward and backward; its FLOPs are not in the count), and the remaining "
                     f"{_pct(1 - mm - attn)} goes to elementwise work, copies and Python between operators "
                     f"({_pct(kd['outside_operators_share'])} outside any operator). With the multiplications "
                     f"running {_pct(mm)} of the time, the count cannot exceed about {_pct(mm)} of the rate even "
                     "if each ran at the full rate.")
        out.append(line)
    rl = rl_update_reading(tr)
    if rl:
        out.append(rl)
    rows = [r for r in (ro or {}).get("rows", []) if r.get("outside_forward_share") is not None
            and r["generator"] == "continuous"]
    for r in rows:
        out.append(f"- **{r['model'].capitalize()} rollouts** (continuous batching, {r['batch']} slots): "
                   f"{100 * r['outside_forward_share']:.1f}% of their time is outside the forward passes (retrieval, "
                   f"tokenising, sampling and bookkeeping; the target is under 10%), and prefill runs at "
                   f"{_pct(r['prefill_share_of_gemm'])} of the GEMM rate (the target is 50%).")
    return "\n".join(out) or "No training, profile or rollout benchmark results for this preset yet."


def rl_update_reading(tr: dict | None) -> str:
    """Why an RL update is slower per token than a KD step (benchmarks/training.py's rows): the linear-layer FLOPs
    each computes per token (dgpo_lib/train/flops.py) against the tokens/s and MFU each reached ("" without both)."""
    from dgpo_lib.train.flops import flops_per_token

    rows = {r["step"]: r for r in (tr or {}).get("rows", [])}
    kd, rl = rows.get("KD (full)"), rows.get("DGPO update (full)")
    if not (kd and rl and (tr or {}).get("linear_weights")):
        return ""
    ws, wt = tr["linear_weights"]["student"], tr["linear_weights"]["teacher"]
    more = flops_per_token("DGPO update (full)", ws, wt) / flops_per_token("KD (full)", ws, wt)
    slower = kd["tokens_per_s"] / rl["tokens_per_s"]
    from dgpo_lib.book.benchmarks import gemm_rate, machine_words

    where = f"{machine_words((tr.get('provenance') or {}).get('machine', {}))}, {gemm_rate(tr)[1]} GEMMs"
    return (f"- **The RL update** (a DGPO step without its rollouts) processes {rl['tokens_per_s']:.0f} tokens/s "
            f"against a KD step's {kd['tokens_per_s']:.0f} on the same machine ({where}; "
            f"`benchmarks/training.py`), {slower:.1f}x fewer. Per token it "
            f"computes {more:.1f}x a KD step's linear-layer FLOPs: the actor's forward for the old log-probs, the "
            "critic's for the old values, then the forward and backward of both, and the teacher's forward, against "
            "KD's one student forward and backward and one teacher forward. It runs at "
            f"{_pct(rl['mfu'])} of the GEMM rate against KD's {_pct(kd['mfu'])}: it is slower because it computes "
            f"more, not because it computes less efficiently, and at KD's efficiency it would still process "
            f"{more:.1f}x fewer tokens per second.")


def observation_reading(bench: dict | None, max_tokens: int) -> str:
    """What `benchmarks/observation_budget.py` measured for this budget: of the searches whose three passages hold a
    gold answer, the share whose cut block still shows it, and the block's length cut and whole ("" without a row
    for `max_tokens`)."""
    row = next((r for r in (bench or {}).get("rows", []) if r["max_obs_tokens"] == max_tokens), None)
    if row is None:
        return ""
    return (f"Over the teacher's {bench['searches']:,} evaluation searches, the three passages hold a gold answer in "
            f"{_pct(bench['answer_in_three_passages'])} of them; cut at {max_tokens} tokens, the block still shows "
            f"{_pct(row['share_of_retrieved_answers'])} of those answers, at {row['mean_block_tokens']:.0f} tokens a "
            f"block against {bench['full_block_tokens']:.0f} uncut.{_validation_by_cut(bench.get('validation'), max_tokens)}")


def _validation_by_cut(rows: list[dict] | None, trained_at: int) -> str:
    """The benchmark's `--model` half: a teacher trained at the preset's cut, its validation EM at each cut and its
    time against the first cut's."""
    if not rows:
        return ""
    first = rows[0]
    each = ", ".join(f"{r['val_em']:.3f} at {r['max_obs_tokens']} tokens" +
                     ("" if r is first else f" ({r['val_s'] / first['val_s']:.1f}x the time)") for r in rows)
    return (f" On {first['questions']} validation questions the teacher trained at {trained_at} tokens scores "
            f"{each}.")


def box(title: str, bullets: Sequence[str]) -> str:
    """A MyST admonition with `bullets` (a chapter's "what this run shows and what it does not"), "" when empty."""
    bullets = [b for b in bullets if b]
    if not bullets:
        return ""
    return f":::{{admonition}} {title}\n:class: important\n\n" + "\n".join(f"- {b}" for b in bullets) + "\n:::"


def results_bullets(res: dict, rows: Sequence[str], summary: dict, cold: Sequence[str], spread: str = "") -> list[str]:
    """What the results table decides, in sentences from its own numbers: the claims that hold against rows above
    zero, those that hold only against rows at zero, RL rows that are their cold start, and run-to-run spread."""
    from dgpo_lib.book.claims import FLOOR
    from dgpo_lib.methods import method

    def count(n: int) -> str:
        return "none" if n == 0 else str(n)

    s = summary
    held = (f"Of the paper's {s['total']} comparison claims, {count(s['held'])} "
            f"{'holds' if s['held'] <= 1 else 'hold'} beyond resampling noise against a row above zero")
    rest = [f"{s['noise']} point{'s' if s['noise'] == 1 else ''} its way within noise" if s["noise"] else "",
            f"{s['failed']} fail{'s' if s['failed'] == 1 else ''}" if s["failed"] else ""]
    out = [held + "".join(f"; {r}" for r in rest if r) + "."]
    if s["at_zero"]:
        zero = ", ".join(f"{row_label(r)} {res['avg_em'][r]:.3f}" for r in s["at_zero_rows"])
        out.append(f"{s['at_zero']} {'holds' if s['at_zero'] == 1 else 'hold'} only against a row at zero ({zero}; "
                   f"below {FLOOR} average EM), which says only that the other method learned something.")
    if cold:
        starts = "; ".join(f"{row_label(r)}: {row_label(method(r).start)}" for r in cold)
        out.append(f"{' and '.join(row_label(r) for r in cold)}: validation EM never rose above step 0, so the "
                   f"checkpoint selected is the model RL started from ({starts}), and the row measures that model, "
                   "not what RL adds.")
    if spread:
        out.append(spread)
    return out


def rl_bullets(curves: dict[str, list[dict]], val: dict[str, list[dict]]) -> list[str]:
    """Short sentences for the top of an RL chapter, one per run: the reward signal it had (rewarded sampled
    rollouts) and where its validation EM was best (step 0 means the row is the model RL started from)."""
    from dgpo_lib.book.selection import selected_step
    from dgpo_lib.methods import method

    out = []
    for k, c in curves.items():
        if not c:
            continue
        rewarded, total = rewarded_rollouts(c)
        line = f"{row_label(k)}: {rewarded} of {total} sampled training rollouts earned a reward"
        v = val.get(k) or []
        step = selected_step(v)
        if step == 0:
            line += (f"; validation EM was never higher than at step 0, so its selected checkpoint, and its row in "
                     f"the table, is its starting model ({row_label(method(k).start)})")
        elif step is not None:
            best = next(r["val_em"] for r in v if r["step"] == step)
            line += f"; validation EM rose from {v[0]['val_em']:.3f} at step 0 to {best:.3f} at step {step}"
        out.append(line + ".")
    return out


def kd_bullets(val: dict[str, list[dict]]) -> list[str]:
    """The top of the KD chapter: the validation ranking of the KD runs and, run by run, finding vs reading."""
    b = val_bullets(val)
    return [b[k] for k in ("ranking", "finding") if k in b]

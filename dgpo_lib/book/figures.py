"""The results as figures: learning curves, validation curves and EM per benchmark."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from dgpo_lib.book.tables import curves_frame, results_frame


PANELS_PER_ROW = 2  # two panels of 4.2 in fill the 688 px text column with tick labels of about 12 px


# the table's rows on the colour-blind palette's strong colours (its pale yellow left out: unreadable as a line)
_ROW_COLOUR = {"kd": 0, "seqkd": 1, "ppo": 2, "dgpo": 3, "gkd": 4, "distillm": 5, "taid": 6, "teacher": 7,
               "student": 9}


def run_colours(runs: Sequence[str]) -> dict[str, tuple]:
    """A colour per run that is the same in every figure of the book: KD is one colour in chapters 04, 05 and 06
    alike. The table's rows take the colour-blind palette (a row standing in for one, GKD from the SeqKD student,
    takes that row's colour unless both are in the figure); ablations and other runs a darker one, in the methods
    table's order."""
    import seaborn as sns

    from dgpo_lib.methods import METHODS, paper_row

    strong, dark = sns.color_palette("colorblind", 10), sns.color_palette("dark", 10)
    order = [m for m in METHODS if m not in _ROW_COLOUR]
    bases = {r.partition("@")[0] for r in runs}
    out = {}
    for i, r in enumerate(runs):
        base = r.partition("@")[0]
        row = base if base in _ROW_COLOUR else paper_row(base)  # a stand-in (GKD from SeqKD) takes its row's colour
        if row in _ROW_COLOUR and (row == base or row not in bases):
            out[r] = strong[_ROW_COLOUR[row]]
        else:
            out[r] = dark[(order.index(base) if base in order else len(order) + i) % len(dark)]
    return out


def plot_curves(metrics: dict[str, list[dict]], keys: Sequence[str], labels: dict[str, str], smooth: int = 1):
    """One panel per metric (two a row), one line per run, one legend above the panels; optional moving average
    (window `smooth`). Runs are named by their row label."""
    import math

    import matplotlib.pyplot as plt

    from dgpo_lib.methods import row_label

    df = curves_frame(metrics, keys)  # runs by their row label
    if df.empty:
        df = pd.DataFrame(columns=["run", "step", "metric", "value"])
    colours = {row_label(r): c for r, c in run_colours(list(metrics)).items()}
    cols = min(PANELS_PER_ROW, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    handles = {}
    for ax, k in zip(axes.flat, keys):
        d = df[df.metric == k].copy()
        if d.empty:
            ax.set_visible(False)
            continue
        if smooth > 1:
            d["value"] = d.groupby("run")["value"].transform(lambda s: s.rolling(smooth, min_periods=1).mean())
        for run, g in d.groupby("run", sort=False):
            (line,) = ax.plot(g["step"], g["value"], color=colours.get(run), label=run,
                              marker="o" if g.step.nunique() < 15 else None, markersize=4)
            handles.setdefault(run, line)
        if d.step.max() > d.step.min():
            ax.set_xlim(d.step.min(), d.step.max())  # the axis ends where the data end
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(labels.get(k, k))
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="lower center", bbox_to_anchor=(0.5, 1.0),
                   ncol=min(len(handles), 3), frameon=False, fontsize=11)
    fig.tight_layout()
    return fig


def plot_val_curves(val: dict[str, list[dict]], quiet: bool = False):
    """Validation-slice curves (greedy EM, searches per question) of several runs; None when none has one (a
    preset with `eval.val_every: 0`; said unless `quiet`)."""
    val = {k: v for k, v in val.items() if v}
    if not val:
        if not quiet:
            print("no validation curves: this preset has eval.val_points = eval.val_every = 0, or data.n_val = 0")
        return None
    return plot_curves(val, ["val_em", "val_searches"], {"val_em": "validation EM (greedy)",
                                                         "val_searches": "searches per question"})


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

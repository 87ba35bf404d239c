"""The results as figures: learning curves, validation curves and EM per benchmark."""
from __future__ import annotations

from typing import Sequence

from dgpo_lib.book.tables import curves_frame, results_frame


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

"""The method drawn: DGPO's pipeline from teacher to evaluation, each stage with what it reads and writes (the
stage names are the project's, `dgpo_lib/pipeline/stages.py`). Drawn by matplotlib so the book needs no network."""
from __future__ import annotations

# (stage, title, what it does, reads, writes), left to right
PIPELINE = [
    ("teacher", "1. Teacher", "a model that already searches\n(paper: Qwen2.5-3B; here:\nSmolLM2-135M after SFT\non oracle episodes)",
     "training questions,\nthe retriever", "the teacher"),
    ("tgo", "2. TGO", "the teacher answers the\ntraining questions; its\ncorrect episodes are kept",
     "teacher, training\nquestions, retriever", "teacher trajectories"),
    ("kd_kd", "3. KD cold start", "student learns the teacher's\ntrajectories: forward KL to\nthe teacher's logits",
     "TGO trajectories,\nteacher logits, student", "KD student"),
    ("rl_dgpo", "4. DGPO (RL)", "PPO with a critic: reward EM;\nwrong episodes pay\nβ·KL to the teacher",
     "KD student, teacher,\nretriever, questions", "DGPO student"),
    ("eval_dgpo", "5. Evaluation", "greedy episodes on the\nseven QA test sets",
     "a student, retriever,\ntest questions", "EM per benchmark"),
]


def pipeline_diagram():
    """The five stages as boxes, three then two, joined by arrows; in each, what it does, reads and writes. Sized
    to be read at the book's column width (about 688 px): the text is 11 pt in a 9.6-inch figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    w, h, gap, row_gap = 3.0, 2.45, 0.55, 0.75
    fig, ax = plt.subplots(figsize=(9.6, 5.6))
    colours = ["#cfe2f3", "#d9ead3", "#fff2cc", "#f4cccc", "#eeeeee"]
    corner = {}
    for i, ((stage, title, does, reads, writes), colour) in enumerate(zip(PIPELINE, colours)):
        x, y = (i % 3) * (w + gap), (1 - i // 3) * (h + row_gap)
        corner[i] = (x, y)
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04", fc=colour, ec="#444444", lw=1.2))
        top = y + h
        ax.text(x + w / 2, top - 0.2, title, ha="center", va="center", fontsize=13, weight="bold")
        ax.text(x + w / 2, top - 0.42, f"stage {stage}", ha="center", va="center", fontsize=9.5,
                family="monospace", color="#555555")
        ax.text(x + w / 2, top - 0.62, does, ha="center", va="top", fontsize=11, linespacing=1.2)
        ax.text(x + 0.12, y + 0.8, "reads: " + reads, ha="left", va="top", fontsize=10, color="#333333",
                linespacing=1.15)
        ax.text(x + 0.12, y + 0.14, "writes: " + writes, ha="left", va="bottom", fontsize=10, color="#1f4e79",
                weight="bold")
    arrow = dict(arrowstyle="-|>", mutation_scale=16, lw=1.6, color="#444444")
    for i in range(1, len(PIPELINE)):
        (x0, y0), (x1, y1) = corner[i - 1], corner[i]
        if y0 == y1:  # side by side
            ax.add_patch(FancyArrowPatch((x0 + w + 0.06, y0 + h / 2), (x1 - 0.06, y1 + h / 2), **arrow))
        else:  # from the end of the first row down through the gap between the rows to the start of the second
            mid = (y0 + y1 + h) / 2
            ax.plot([x0 + w / 2, x0 + w / 2, x1 + w / 2], [y0 - 0.06, mid, mid], color="#444444", lw=1.6)
            ax.add_patch(FancyArrowPatch((x1 + w / 2, mid), (x1 + w / 2, y1 + h + 0.06), **arrow))
    ax.set_xlim(-0.15, 3 * w + 2 * gap + 0.15)
    ax.set_ylim(-0.15, 2 * h + row_gap + 0.15)
    ax.axis("off")
    fig.tight_layout()
    return fig


def save(fig, path) -> None:
    """Write `fig` as SVG without the timestamp and random ids matplotlib adds, so a redraw changes no byte;
    text as paths, so every browser shows the same letters in the same place."""
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "dgpo", "svg.fonttype": "path"}):
        fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")

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
    """The five stages as boxes joined by arrows; under each, what it reads and what it writes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    w, gap, h = 2.6, 0.45, 1.45
    fig, ax = plt.subplots(figsize=(13.5, 4.0))
    colours = ["#cfe2f3", "#d9ead3", "#fff2cc", "#f4cccc", "#eeeeee"]
    for i, ((stage, title, does, reads, writes), colour) in enumerate(zip(PIPELINE, colours)):
        x = i * (w + gap)
        ax.add_patch(FancyBboxPatch((x, 1.2), w, h, boxstyle="round,pad=0.04", fc=colour, ec="#444444", lw=1.2))
        ax.text(x + w / 2, 1.2 + h - 0.22, title, ha="center", va="center", fontsize=12.5, weight="bold")
        ax.text(x + w / 2, 1.2 + h / 2 - 0.17, does, ha="center", va="center", fontsize=10, linespacing=1.25)
        ax.text(x + w / 2, 1.2 + h + 0.22, f"stage `{stage}`", ha="center", va="center", fontsize=9.5,
                family="monospace", color="#555555")
        ax.text(x + 0.05, 0.98, "reads", ha="left", va="top", fontsize=9.5, color="#666666", style="italic")
        ax.text(x + 0.05, 0.72, reads, ha="left", va="top", fontsize=9.5, color="#333333", linespacing=1.2)
        ax.text(x + 0.05, 0.12, "writes", ha="left", va="top", fontsize=9.5, color="#666666", style="italic")
        ax.text(x + 0.62, 0.12, writes, ha="left", va="top", fontsize=9.5, color="#1f4e79", weight="bold")
        if i:
            ax.add_patch(FancyArrowPatch((x - gap + 0.04, 1.2 + h / 2), (x - 0.04, 1.2 + h / 2),
                                         arrowstyle="-|>", mutation_scale=16, lw=1.6, color="#444444"))
    ax.set_xlim(-0.15, len(PIPELINE) * (w + gap) - gap + 0.15)
    ax.set_ylim(-0.25, 3.0)
    ax.axis("off")
    fig.tight_layout()
    return fig


def save(fig, path) -> None:
    """Write `fig` as SVG without the timestamp and random ids matplotlib adds, so a redraw changes no byte;
    text as paths, so every browser shows the same letters in the same place."""
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "dgpo", "svg.fonttype": "path"}):
        fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")

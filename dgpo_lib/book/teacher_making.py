"""The teacher's making as one curve per part: SFT on oracle trajectories, each rejection-sampling round, PPO. A
later part's steps follow the earlier parts' on the x axis, so the curves read left to right in training order."""
from __future__ import annotations


def teacher_parts(cfg) -> dict[str, str]:
    """{label: the part's folder under the stage (for `run.metrics`)}, in training order."""
    rounds = {f"rejection-sampling round {r}": f"teacher/rft_{r}" for r in range(1, cfg.teacher.rft_rounds + 1)}
    return {"teacher SFT": "teacher/sft", **rounds, "teacher PPO": "teacher/ppo"}


def teacher_curves(run, file: str = "metrics.jsonl", parts: dict[str, str] | None = None) -> dict[str, list[dict]]:
    """Each part's rows of `file` (metrics.jsonl or val_metrics.jsonl) with its steps counted from the end of the
    parts before it (the previous part's last training step); parts with no rows are left out."""
    out, offset = {}, 0
    for label, part in (parts or teacher_parts(run.cfg)).items():
        steps = run.metrics(part)
        rows = steps if file == "metrics.jsonl" else run.metrics(part, file)
        if rows:
            out[label] = [{**r, "step": r["step"] + offset} for r in rows]
        offset += max((r["step"] for r in steps), default=0)
    return out

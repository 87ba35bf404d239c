"""Guided experiments at the end of a chapter: what a change tests, the one command that runs it, and what it costs
here, priced from the stage records of the run the chapter shows."""
from __future__ import annotations

from typing import Sequence


def try_it(run, preset: str, experiments: Sequence[tuple[str, str, str, str, Sequence[str]]]) -> str:
    """Markdown bullets, one per `(what it tests, name, chapter, overrides, stages like it)`: the command that runs
    the chapter with those overrides into `runs/try-<name>/` (the book's own chapter stays as it is), and its cost
    as the work time of already-run stages like the ones it adds (e.g. an RL run like `rl_dgpo` and an evaluation
    like `eval_kd`: DGPO's own evaluation may be a copy of its cold start's, which costs nothing); the stages it
    shares with this run are reused. A variant this run already shows (its row in the config's rows) is left out."""
    import re

    from dgpo_lib.pipeline import work_s

    records = run.stage_records()
    shown = {*run.cfg.eval.methods, *run.cfg.eval.ablations}
    out = []
    for what, name, chapter, overrides, like in experiments:
        rows = re.findall(r"eval\.(?:ablations|methods)=\[([^\]]*)\]", overrides)
        if rows and {r.strip() for r in ",".join(rows).split(",")} <= shown:
            continue
        cmd = f"python -m dgpo_lib.book.reproduce --preset {preset} --only {chapter} --out runs/try-{name} {overrides}"
        seconds = [work_s(records[s]) for s in like if s in records]
        cost = (f"about {sum(seconds) / 60:.0f} min here (as long as {' and '.join(f'`{s}`' for s in like)} took in this run)"
                if len(seconds) == len(like) and seconds else f"as long as one run of {', '.join(like)}")
        out.append(f"- **{what}**\n\n  ```bash\n  {cmd}\n  ```\n\n  {cost}; the chapter, executed into "
                   f"`runs/try-{name}/`, shows it beside DGPO.")
    return "\n".join(out)

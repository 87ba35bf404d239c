"""Run one cached stage from the command line (what the notebooks call), e.g.

    python -m dgpo_lib.pipeline.run_stage kd_taid --preset cpu
    python -m dgpo_lib.pipeline.run_stage rl_dgpo --preset cpu rl.steps=50
    python -m dgpo_lib.pipeline.run_stage index --preset paper

Stages: index, student (healing a pruned student), teacher, tgo, kd_<seqkd|kd|gkd|distillm|taid|gkd_onpolicy|kd_then_gkd>,
rl_<variant>, eval_<row>, results.
A stage that was interrupted resumes from its latest checkpoint; one that has finished returns at once. It runs
the stages it reads first, and writes each under the run folder (`run_root`, default `runs/`):
`<run_root>/<preset>-<stage key>/<stage>/` with its `done.json`. How long: seconds on `smoke`; on `cpu`, what
`results/cpu/<stage>/done.json` records (5 to 100 minutes a stage on 2 cores); prints the stage's result as JSON.
"""
from __future__ import annotations

import json
import logging
import sys

from dgpo_lib.config import ConfigError, load_config
from dgpo_lib.pipeline import Run


def run_stage(run: Run, stage: str):
    if stage == "index":
        return len(run.resources.retriever().passages)
    if stage == "results":
        return run.results(list(run.cfg.eval.methods) + list(run.cfg.eval.ablations))["avg_em"]
    out = run.stage(stage)
    return out["avg_em"] if stage.startswith("eval_") else str(out)


def main(argv=None) -> int:
    from dgpo_lib.cli import parse, parser
    from dgpo_lib.methods import BETA_PREFIX, METHODS
    ap = parser(__doc__)
    ap.add_argument("stage", help="index, student, teacher, tgo, "
                    + ", ".join(f"{m.stage}_{n}" for n, m in METHODS.items() if m.stage in ("kd", "rl"))
                    + f", rl_{BETA_PREFIX}<x>, eval_<row>, results")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    a = parse(ap, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("faiss", "faiss.loader", "httpx", "bm25s"):  # library chatter, not the stage's progress
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from dgpo_lib.pauses import install
    install()  # `kill -TSTP <pid>` ... `kill -CONT <pid>`: a pause the stage's record leaves out of its work time
    try:
        cfg = load_config(a.preset, a.overrides)
        out = run_stage(Run(cfg, progress=not a.quiet), a.stage)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"stage {a.stage}: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"stage": a.stage, "result": out}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The reproduction as cached stages. Notebooks call these; each stage writes its outputs under
`<run_root>/<preset>-<stage key>/<stage>/` and a `done.json` last, so a finished stage is reused, a half-finished
one is redone (training stages resume from their checkpoints), and the book can be rebuilt without retraining.
The run's own folder `<run_root>/<preset>-<config hash>/` holds the files of the whole config (results.json,
config.json).

- `keys.py`: which stages a config has, what each reads, its cache key (no torch);
- `records.py`: a stage's done.json and its running/finished/reused log lines;
- `stages.py`: one function per stage (healing, teacher, TGO, KD, RL, evaluation);
- `results.py`: the results table;
- `resources.py`: the questions, the retriever and the environments the stages of a config share;
- `run.py`: `Run`, which ties them to one config;
- `run_stage.py`: one stage from the command line; `preflight.py`: can this machine run a preset?

Stages: index -> student (healing a pruned student) -> teacher -> tgo -> kd_<method> -> rl_<variant> -> eval_<row> -> results.
"""
from dgpo_lib.methods import KD_ABLATIONS, KD_ROWS, METHODS, RL_ROWS, method  # noqa: F401
from dgpo_lib.pipeline.keys import NOT_IN_KEYS, row_stage, stage_reads  # noqa: F401
from dgpo_lib.pipeline.records import StageRecords, work_s  # noqa: F401
from dgpo_lib.pipeline.run import Run, StageNotDone  # noqa: F401

"""Put a committed run's small result files (what `collect_results.py` copied) back into a run root, so that the
chapters execute over them without training: every stage found there counts as finished.

    .venv/bin/python scripts/restore_results.py --preset cpu --src results/cpu

The weights are not committed, so what needs a trained model (the protocol probe of chapters 04 and 08) shows
only the models whose probe was kept with the results. A stage is restored only into the folder of its own cache
key: its `done.json` names the key it ran under, and a stage whose key differs from this config's is refused (the
config changed since) unless `--accept-key` names it (`--accept-all`: every stage). Nothing is overwritten: a stage already in the run root
stays as it is. `--stage` restores only the stages it names (e.g. one evaluation another run root reuses).
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dgpo_lib.config import load_config  # noqa: E402
from dgpo_lib.pipeline import Run  # noqa: E402


def restore(run: Run, src: Path, accept_key: set[str] = frozenset(), only: set[str] = frozenset()) -> dict[str, str]:
    """Copy each stage folder of `src` (those in `only`, when given) into `run.stage_dir(stage)`; returns stage ->
    what happened."""
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such results folder")
    unknown = sorted(set(only) - set(run.stage_names()))
    if unknown:
        raise ValueError(f"--stage {', '.join(unknown)}: not a stage of this config ({', '.join(run.stage_names())})")
    out = {}
    for stage in (s for s in run.stage_names() if not only or s in only):
        done = src / stage / "done.json"
        if not done.exists():
            out[stage] = "not in the results"
            continue
        recorded, key = json.loads(done.read_text()).get("stage_key"), run.stage_key(stage)
        if recorded is None:
            raise ValueError(f"{done}: no stage_key field (not written by this library's stages)")
        if recorded != key and stage not in accept_key:
            out[stage] = f"refused: ran under key {recorded}, this config's is {key}"
            continue
        dst = run.stage_dir(stage)
        if (dst / "done.json").exists():
            out[stage] = "already finished in the run root"
            continue
        tmp = dst.with_name(f".{dst.name}.restoring")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src / stage, tmp)
        shutil.rmtree(dst, ignore_errors=True)  # an unfinished attempt of the stage: its checkpoints are older
        tmp.rename(dst)
        out[stage] = "restored" if recorded == key else f"restored (key {recorded} accepted)"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--src", type=Path, default=None, help="results folder (default results/<preset>)")
    ap.add_argument("--accept-key", action="append", default=[], metavar="STAGE",
                    help="restore STAGE although its recorded cache key differs from this config's")
    ap.add_argument("--accept-all", action="store_true",
                    help="--accept-key for every stage: the chapters over a committed run of older code, under the "
                         "overrides it ran with (results/<preset>/overrides.txt)")
    ap.add_argument("--stage", action="append", default=[], metavar="STAGE",
                    help="restore only STAGE (repeatable; default: every stage found in --src)")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_intermixed_args()
    run = Run(load_config(a.preset, a.overrides), progress=False)
    src = a.src or Path(__file__).resolve().parent.parent / "results" / a.preset
    try:
        accept = set(run.stage_names()) if a.accept_all else set(a.accept_key)
        report = restore(run, src, accept, set(a.stage))
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"restore_results: {e}")
    for stage, what in report.items():
        print(f"{stage:28s} {what}")
    if not any(w.startswith("restored") for w in report.values()):
        sys.exit(f"restore_results: nothing restored from {src}")


if __name__ == "__main__":
    main()

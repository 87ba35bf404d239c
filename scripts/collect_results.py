"""Copy a run's small result files (no weights, no datasets) into results/<preset>/ for committing.

    .venv/bin/python scripts/collect_results.py --preset cpu

Kept: every stage's done.json (provenance, wall time, peak memory), training metrics.jsonl, evaluation
summary.json and per-question records, results.json and the protocol probes (probe.json), with the config.json they
belong to. The folder is replaced as a whole, so it never mixes files of two runs (an older config's stages would
otherwise linger). `restore_results.py` puts them back into a run root.
"""
import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dgpo_lib.config import load_config  # noqa: E402
from dgpo_lib.io_utils import atomic_write_json  # noqa: E402
from dgpo_lib.pipeline import Run  # noqa: E402

KEEP = ("done.json", "metrics.jsonl", "val_metrics.jsonl", "summary.json", "records_*.jsonl", "results*.json",
        "all_records.jsonl", "made_by.json", "probe.json")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--out", type=Path, default=None, help="destination folder (default results/<preset>)")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_intermixed_args()
    run = Run(load_config(a.preset, a.overrides), progress=False)
    out = a.out or Path(__file__).resolve().parent.parent / "results" / a.preset
    final, out = out, out.with_name(f".{out.name}.tmp")
    shutil.rmtree(out, ignore_errors=True)
    n = 0
    # the run's own files, then each stage's folder (stages live in folders keyed by what they read)
    folders = [(run.dir, Path("."))] + [(run.stage_dir(s), Path(s)) for s in run.stage_names()]
    for src, dst_rel in folders:
        for pattern in KEEP:
            for f in src.rglob(pattern) if src.is_dir() else []:
                rel = f.relative_to(src)
                if src == run.dir and len(rel.parts) > 1:
                    continue
                if any(part in ("ckpt", "model") or part.startswith(".") for part in rel.parts):
                    continue
                dst = out / dst_rel / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dst)
                n += 1
    if n == 0:
        shutil.rmtree(out, ignore_errors=True)
        sys.exit(f"collect_results: nothing to copy in {run.dir} (has this preset run?)")
    atomic_write_json(out / "config.json", run.cfg.to_record())  # the config these files belong to, always
    shutil.rmtree(final, ignore_errors=True)
    out.rename(final)
    print(f"copied {n} files from {run.dir} to {final}")


if __name__ == "__main__":
    main()

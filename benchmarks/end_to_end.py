"""End to end: wall time and peak memory of each stage of a reproduction, read from the stage records that the
pipeline writes (`done.json`) and the runner's log; prints each stage's share of the 90-minute budget.

    /usr/bin/time -v .venv/bin/python -m dgpo_lib.reproduce --preset cpu 2> reproduce.time
    .venv/bin/python benchmarks/end_to_end.py --preset cpu [--time-log reproduce.time]
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from common import table, write

from dgpo_lib.config import load_config
from dgpo_lib.pipeline import Run

BUDGET_S = 90 * 60


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--time-log", type=Path, help="stderr of /usr/bin/time -v around the reproduction")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_intermixed_args()
    cfg = load_config(a.preset, a.overrides)
    run = Run(cfg, progress=False)
    rows = []
    for p in sorted(run.dir.glob("*/done.json")):
        d = json.loads(p.read_text())
        rows.append({"stage": p.parent.name, "wall_s": d.get("wall_s", 0.0), "peak_rss_gib": d.get("peak_rss_gib"),
                     "budget_share": d.get("wall_s", 0.0) / BUDGET_S})
    rows.sort(key=lambda r: -r["wall_s"])
    total = sum(r["wall_s"] for r in rows)
    peak = None
    if a.time_log and a.time_log.exists():
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", a.time_log.read_text())
        peak = int(m.group(1)) / 2 ** 20 if m else None
    print(table(rows, ["stage", "wall_s", "budget_share", "peak_rss_gib"]))
    print(f"stages total {total / 60:.1f} min; peak RSS of the whole run: {peak if peak is None else f'{peak:.2f} GiB'}")
    write(f"end_to_end_{a.preset}", {"stages": rows, "total_stage_s": total, "peak_rss_gib": peak,
                                     "budget_s": BUDGET_S}, cfg)


if __name__ == "__main__":
    main()

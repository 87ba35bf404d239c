#!/usr/bin/env bash
# The prepared GPU check: the smoke preset's stages, then the rollout and training benchmarks, on the device torch
# finds (CUDA where there is one, else the CPU, which is how CI runs it), each step's exit status and seconds in
# one JSON, `device_check_<cuda|cpu>.json`, beside the benchmarks' own JSON and every step's log.
#
#     scripts/device_check.sh [OUT (runs/device_check)]
#
# On a GPU machine without network: first `scripts/device_wheels.sh` here (the wheels that machine lacks, into the
# ignored .whl/device), then run this with `.whl` carried; packages missing there are installed from those wheels
# into OUT/site, never over the machine's own torch. Retrieval is BM25 (`retrieval.kind=bm25`): a dense
# encoder's weights do not travel. Environment: PYTHON (default .venv/bin/python, else python3);
# DEVICE_CHECK_STAGES (default `results`: every stage of the results table and the ablations);
# DEVICE_CHECK_BENCH=0 skips the benchmarks. Exit status: 0 when every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/device_check}
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ -n "${PYTHON:-}" ]; then py=$PYTHON; elif [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi

missing=$("$py" -c 'import importlib.util as u; print(" ".join(m for m in ("trl", "datasets", "dill", "multiprocess", "bm25s") if u.find_spec(m) is None))')
if [ -n "$missing" ]; then
  echo "[device_check] not installed here: $missing; installing the carried wheels (.whl/device) into $out/site"
  ls .whl/device/*.whl > /dev/null 2>&1 || { echo "[device_check] no wheels in .whl/device: run scripts/device_wheels.sh first" >&2; exit 2; }
  "$py" -m pip install -q --no-index --no-deps --target "$out/site" .whl/device/*.whl || exit 2
  export PYTHONPATH="$out/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export DGPO_BENCH_RESULTS="$out/bench" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
overrides=(retrieval.kind=bm25 "run_root=$out/runs")
steps_file="$out/steps.jsonl"
: > "$steps_file"

step() {  # step NAME COMMAND...: run it, log to OUT/NAME.log, record its exit status and seconds
  local name=$1; shift
  local t0 t1 rc
  t0=$(date +%s%N)
  echo "[device_check $(date +%T)] $name: $*"
  "$@" > "$out/$name.log" 2>&1
  rc=$?
  t1=$(date +%s%N)
  echo "{\"step\": \"$name\", \"rc\": $rc, \"ms\": $(( (t1 - t0) / 1000000 ))}" >> "$steps_file"
  [ $rc -eq 0 ] || { echo "[device_check] $name failed (exit $rc); the end of $out/$name.log:"; tail -n 30 "$out/$name.log"; }
}

for stage in ${DEVICE_CHECK_STAGES:-results}; do
  step "stage_$stage" "$py" -m dgpo_lib.pipeline.run_stage "$stage" --preset smoke --quiet "${overrides[@]}"
done
if [ "${DEVICE_CHECK_BENCH:-1}" != 0 ]; then
  step bench_rollout "$py" benchmarks/rollout.py --preset smoke "${overrides[@]}" --questions 16 --batch 8 --single 2
  step bench_training "$py" benchmarks/training.py --preset smoke "${overrides[@]}" --steps 2
fi

"$py" - "$out" <<'PY'
import json, platform, sys
from pathlib import Path

import torch

out = Path(sys.argv[1])
sys.path.insert(0, ".")
from dgpo_lib.io_utils import atomic_write_json, provenance

cuda = torch.cuda.is_available()
steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
for s in steps:
    s["seconds"] = s.pop("ms") / 1000
bench = {p.stem: json.loads(p.read_text()) for p in sorted((out / "bench").glob("*.json"))}
report = {"device": "cuda" if cuda else "cpu", "gpu": torch.cuda.get_device_name(0) if cuda else None,
          "torch": torch.__version__, "python": platform.python_version(), "steps": steps,
          "passed": all(s["rc"] == 0 for s in steps), "total_seconds": round(sum(s["seconds"] for s in steps), 1),
          "benchmarks": bench, "provenance": provenance()}
path = out / f"device_check_{report['device']}.json"
atomic_write_json(path, report)
for s in steps:
    print(f"{s['step']:24s} {'ok' if s['rc'] == 0 else 'FAILED (exit %d)' % s['rc']:16s} {s['seconds']:8.1f} s")
print(f"{'passed' if report['passed'] else 'FAILED'} on {report['gpu'] or 'the CPU'} in {report['total_seconds']:.0f} s: {path}")
sys.exit(0 if report["passed"] else 1)
PY

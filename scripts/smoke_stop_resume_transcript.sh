#!/usr/bin/env bash
# Record what a user's terminal shows when a `smoke` main job is stopped with Ctrl-C during chapter 03 and the same
# command is run again: results/transcripts/smoke_stopped_and_resumed.txt. Ctrl-C is simulated by SIGINT to the
# job's process group, as a terminal sends it. The chapters go to a scratch folder; about 6 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=runs/transcript-stop
rm -rf "$runs"
out=$(mktemp -d)
log=results/transcripts/smoke_stopped_and_resumed.txt
mkdir -p results/transcripts
cmd=(.venv/bin/python -m dgpo_lib.book.reproduce --preset smoke --out "$out" "run_root=$runs")
shown="\$ .venv/bin/python -m dgpo_lib.book.reproduce --preset smoke --out <scratch> run_root=$runs"
{
  echo "$shown"
  # a script's background job starts with SIGINT ignored: restore it, and give the job its own process group
  .venv/bin/python -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.setsid();
os.execv(sys.argv[1], sys.argv[1:])' "${cmd[@]}" > "$log.job" 2>&1 &
  job=$!
  until [ -e "$runs/notebooks-smoke/03_teacher_rollouts.ipynb" ]; do
    kill -0 "$job" 2>/dev/null || { cat "$log.job"; echo "the job ended before chapter 03"; exit 1; }
    sleep 0.2
  done
  sleep 5
  kill -INT -- "-$job"
  rc=0; wait "$job" || rc=$?
  cat "$log.job"
  echo "^C  (exit code $rc)"
  echo
  echo "$shown"
  "${cmd[@]}" 2>&1 | sed "s#$out#<scratch>#g"
  echo "(exit code ${PIPESTATUS[0]})"
} 2>&1 | sed "s#$out#<scratch>#g" > "$log.tmp"
mv "$log.tmp" "$log"
rm -f "$log.job"
rm -rf "$out" "$runs"
echo "wrote $log ($(wc -l < "$log") lines)"

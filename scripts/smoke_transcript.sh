#!/usr/bin/env bash
# Record what a user's terminal shows for a `smoke` main job from scratch (fresh run folder), for the
# reproducing page: results/transcripts/smoke_main_job.txt. The executed chapters go to a scratch folder, so
# book/executed/ is untouched. Takes about 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=runs/transcript-smoke
rm -rf "$runs"
out=$(mktemp -d)
mkdir -p results/transcripts
{
  echo "\$ .venv/bin/python -m dgpo_lib.book.reproduce --preset smoke"
  /usr/bin/time -f "(wall %e s, peak memory %M KiB)" .venv/bin/python -m dgpo_lib.book.reproduce --preset smoke \
    --out "$out" "run_root=$runs" 2>&1
} > results/transcripts/smoke_main_job.txt.tmp
mv results/transcripts/smoke_main_job.txt.tmp results/transcripts/smoke_main_job.txt
rm -rf "$out" "$runs"
echo "wrote results/transcripts/smoke_main_job.txt ($(wc -l < results/transcripts/smoke_main_job.txt) lines)"

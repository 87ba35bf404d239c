"""Run every notebook in order with papermill: `python -m dgpo_lib.book.reproduce --preset cpu [key=value ...]`.

It trains and evaluates everything the book shows (the `cpu` preset: about 15 h of work on 2 cores and a peak
of about 15.5 GiB in its last reference run; `smoke`: a few minutes), executing the ten chapters in order; each
chapter runs the stages it shows, cached in the run folder (`run_root`, default `runs/<preset>`).

Executed chapters go to `--out`: for `cpu`, `book/executed` (where the book reads them); for any other preset
`<run_root>/book-<preset>`, so a smoke or paper run never replaces the committed book unless `--out book/executed`
asks it to. Each chapter executes in `<run_root>/notebooks-<preset>/` and replaces its copy in `--out` only once it
has run to the end, and only if something in it changed beyond timestamps, so a rerun over finished stages leaves
`git status` clean. Ctrl-C (or SIGTERM) stops the job with one line of what was kept and the command that resumes;
a rerun picks up where it stopped (a stage from its last checkpoint). A failure names the notebook and cell.
"""
from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
from pathlib import Path

from dgpo_lib.config import ConfigError, _dotted_to_nested, load_config, resolve_seed
from dgpo_lib.data.loaders import REPO_ROOT, repo_path, shown_path
from dgpo_lib.io_utils import atomic_path, atomic_write_json, provenance

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


class NotebookFailed(RuntimeError):
    pass


class Interrupted(Exception):
    """The job was stopped (Ctrl-C or SIGTERM) while `chapter` executed; `finished` chapters are in the book."""

    def __init__(self, chapter: str | None, finished: list[str], stages_done: int, stages_total: int):
        super().__init__(chapter)
        self.chapter, self.finished = chapter, finished
        self.stages_done, self.stages_total = stages_done, stages_total


def default_out(preset: str, run_root: str | Path) -> Path:
    """Where a preset's executed chapters go: the book for `cpu`, the run folder for any other preset."""
    return REPO_ROOT / "book" / "executed" if preset == "cpu" else repo_path(run_root) / f"book-{preset}"


def chapters(only: list[str] | None = None) -> list[Path]:
    """The notebooks in order, or those whose name starts with one of `only` (each must match one)."""
    books = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only is None:
        return books
    missing = [o for o in only if not any(b.stem.startswith(o) for b in books)]
    if missing or not only:
        raise ValueError(f"--only {' '.join(only) or '(nothing)'}: no chapter starts with "
                         f"{', '.join(missing) or 'nothing'} (chapters: {', '.join(b.stem for b in books)})")
    return [b for b in books if any(b.stem.startswith(o) for o in only)]


def kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager
    return "dgpo" if "dgpo" in KernelSpecManager().find_kernel_specs() else "python3"


def ipc_kernel_manager(folder: Path, stderr: Path | None = None):
    """papermill's kernel manager, with the kernel's sockets as files in `folder` (IPC) instead of TCP ports:
    nothing listens on the network, and the kernel does not warn about unencrypted TCP for every chapter. Each
    kernel gets a subfolder, so two jobs or two chapters never share a socket. The kernel process's own messages
    (Jupyter's start-up and shut-down chatter) go to `stderr`, not the terminal."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self):
            return "ipc"

        @default("ip")
        def _ip_default(self):
            import tempfile
            return str(Path(tempfile.mkdtemp(dir=folder)) / "kernel")

        async def _async_start_kernel(self, **kw):
            if stderr is None or "stderr" in kw:
                return await super()._async_start_kernel(**kw)
            with open(stderr, "ab") as f:  # the kernel process gets its own copy of the descriptor
                return await super()._async_start_kernel(**kw, stderr=f)

        start_kernel = _async_start_kernel

    return IPCKernelManager


def run_notebooks(preset: str = "cpu", seed: int | None = None, overrides: dict | None = None, out: Path | None = None,
                  only: list[str] | None = None, progress: bool = True, ablations: list[str] | None = None,
                  say=None) -> list[Path]:
    """Execute the chapters (all, or those `only` names) into `out`; `progress` follows the stages' logs on the
    terminal; `say` prints the job's own lines (default: print when `progress`)."""
    import papermill as pm

    from dgpo_lib.book.job_log import LOG_ENV, LogFollower
    from dgpo_lib.pipeline import Run

    overrides = overrides or {}
    seed = resolve_seed(seed, overrides)
    cfg = load_config(preset, {**overrides, "seed": seed})  # fail fast on a bad key, before any notebook runs
    out = Path(out or default_out(Path(preset).stem, cfg.run_root))
    books = chapters(only)
    out.mkdir(parents=True, exist_ok=True)
    work = repo_path(cfg.run_root) / f"notebooks-{preset}"  # where notebooks execute; `out` only ever gets finished ones
    work.mkdir(parents=True, exist_ok=True)
    say = say or (functools.partial(print, flush=True) if progress else (lambda *a, **k: None))
    log_file = work / "main.log"  # every chapter's stage logs and progress bars, shown below as they come
    with open(log_file, "a", encoding="utf-8") as f:
        f.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} reproduce --preset {preset} seed={seed}\n")
    os.environ[LOG_ENV] = str(log_file)  # the kernels inherit it
    known = reference_timings(preset, out)
    stage_cost = reference_stage_work(preset)
    run = Run(cfg, progress=False)
    done_at_start = all(run.is_done(s) for s in run.stage_names())
    follower = LogFollower(log_file, status=StageWatch(run, stage_cost)).start() if progress else None
    say(f"reproduce: {len(books)} chapters, preset {preset}; chapters to {shown_path(out)}; log {shown_path(log_file)}")
    done, timings, nb = [], {}, None
    import tempfile
    sockets = tempfile.TemporaryDirectory(prefix="dgpo-kernels-")  # short paths: a socket path has ~100 bytes
    try:
        for i, nb in enumerate(books, 1):
            left = [b.stem for b in books[i - 1:]]
            eta = remaining_estimate(run, stage_cost, {b: known[b] for b in left if b in known})
            say(f"[{i}/{len(books)}] {nb.stem}{eta}")
            t0 = time.time()
            target, running = out / nb.name, work / nb.name
            try:
                params = {"preset": preset, "seed": seed, "overrides": overrides}
                if nb.stem.startswith("06") and ablations is not None:
                    params["ablations"] = list(ablations)
                pm.execute_notebook(str(nb), str(running), parameters=params,
                                    kernel_name=kernel_name(), progress_bar=False, cwd=str(REPO_ROOT),
                                    log_output=False, kernel_manager_class=ipc_kernel_manager(Path(sockets.name), work / "kernels.log"))
            except pm.PapermillExecutionError as e:
                if e.ename == "KeyboardInterrupt":  # Ctrl-C reached the kernel too
                    raise KeyboardInterrupt from None
                kept = f"{shown_path(target)} is unchanged" if target.exists() else f"nothing written to {shown_path(out)}"
                raise NotebookFailed(f"notebook {nb.name} failed in cell {e.cell_index} (execution count "
                                     f"{e.exec_count}): {e.ename}: {_plain(e.evalue)}\n(executed copy with the "
                                     f"traceback: {shown_path(running)}; {kept}; log: {shown_path(log_file)})") from None
            new = finished_chapter(running.read_bytes(), nb, target)
            if not (target.exists() and same_but_timestamps(target.read_bytes(), new)):
                with atomic_path(target, "wb") as f:  # the finished chapter replaces the old one in one rename
                    f.write(new)
            timings[nb.stem] = round(time.time() - t0, 1)
            if follower:
                follower.poll()
            say(f"[{i}/{len(books)}] {nb.stem} finished in {timings[nb.stem] / 60:.1f} min")
            done.append(target)
    except KeyboardInterrupt:
        raise Interrupted(nb.stem if nb is not None and len(done) < len(books) else None,
                          [p.stem for p in done], sum(run.is_done(s) for s in run.stage_names()),
                          len(run.stage_names())) from None
    finally:
        sockets.cleanup()
        if follower:
            follower.stop()
        os.environ.pop(LOG_ENV, None)
    import resource
    peak = round(max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                     resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 2 ** 20, 2)
    extra = {}
    record = out / "reproduce.json"
    if done_at_start and record.exists() and json.loads(record.read_text()).get("config_hash") == cfg.hash():
        say(f"reproduce: every stage had finished before this run; {shown_path(record)} keeps the timings of the "
            f"run that did the work")
        return done
    if only:  # a partial re-run keeps the timings of the notebooks it did not run
        old = json.loads(record.read_text()) if record.exists() else {}
        if old.get("config_hash") == cfg.hash():
            timings = {**old.get("notebook_wall_s", {}), **timings}
            peak = max(peak, old.get("peak_rss_gib") or 0)
        timings = {**_executed_durations(out, preset, set(timings)), **timings}
        extra["rerun"] = sorted(set(old.get("rerun", [])) | {b.stem for b in books})
    atomic_write_json(record, provenance(cfg, notebook_wall_s=timings, overrides=overrides,
                                         total_wall_s=round(sum(timings.values()), 1), peak_rss_gib=peak, **extra))
    return done


def finished_chapter(raw: bytes, source: Path, target: Path) -> bytes:
    """An executed chapter as the book keeps it: papermill's injected-parameters cell tagged remove-cell (the
    banner says preset, seed and config hash) with a fixed cell id, and repository-relative paths in papermill's
    record (no machine's folders; a chapter written outside the repository records its file name); a cell's
    consecutive prints as one stream output (how the kernel chunks them depends on timing)."""
    nb = json.loads(raw)
    for c in nb["cells"]:
        if c.get("outputs"):
            c["outputs"] = merged_streams(c["outputs"])
        tags = c.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags:
            c["id"] = "injected-parameters"  # papermill gives it a random id each run
            if "remove-cell" not in tags:
                tags.append("remove-cell")
    meta = nb.get("metadata", {}).get("papermill", {})
    inside = not Path(shown_path(target)).is_absolute()  # a folder outside the repository is named by file only
    meta.update(input_path=shown_path(source), output_path=shown_path(target) if inside else target.name)
    return (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode()


def merged_streams(outputs: list[dict]) -> list[dict]:
    """`outputs` with each run of consecutive stream outputs of one name (stdout, stderr) joined into one, its text
    as lines: the same prints give the same outputs however the kernel happened to flush them."""
    out: list[dict] = []
    for o in outputs:
        if o.get("output_type") == "stream" and out and out[-1].get("output_type") == "stream" \
                and out[-1].get("name") == o.get("name"):
            out[-1] = {**out[-1], "text": _text(out[-1]["text"]) + _text(o["text"])}
        else:
            out.append(o)
    for o in out:
        if o.get("output_type") == "stream":
            o["text"] = _text(o["text"]).splitlines(keepends=True)
    return out


def _text(t) -> str:
    return "".join(t) if isinstance(t, list) else t


_VOLATILE = ("start_time", "end_time", "duration", "status", "exception")


def same_but_timestamps(old: bytes, new: bytes) -> bool:
    """Whether two executions of a chapter differ only in when they ran and how long they took."""
    def strip(raw: bytes):
        try:
            nb = json.loads(raw)
        except ValueError:
            return None
        for meta in [nb.get("metadata", {})] + [c.get("metadata", {}) for c in nb.get("cells", [])]:
            meta.pop("execution", None)
            for k in _VOLATILE:
                meta.get("papermill", {}).pop(k, None)
        return nb
    a = strip(old)
    return a is not None and a == strip(new)


def _plain(text: str) -> str:
    """Text without terminal colour codes (IPython colours its error values)."""
    import re
    return re.sub(r"\x1b\[[0-9;]*m", "", str(text))


class StageWatch:
    """Asked every half second by the log follower: when the count of finished stages changes, one line with the
    count and the work left at the reference run's costs (so the estimate printed at the start is kept current)."""

    def __init__(self, run, stage_cost: dict[str, float], every_s: float = 5.0):
        self.run, self.stage_cost, self.every_s = run, stage_cost, every_s
        self.seen, self.checked_at = self._done(), time.time()

    def _done(self) -> int:
        return sum(self.run.is_done(s) for s in self.run.stage_names())

    def __call__(self) -> str | None:
        if time.time() - self.checked_at < self.every_s:
            return None
        self.checked_at = time.time()
        n = self._done()
        if n == self.seen:
            return None
        self.seen = n
        left = sum(self.stage_cost.get(s, 0) for s in self.run.stage_names() if not self.run.is_done(s))
        when = f"; about {left / 3600:.1f} h of stage work left at the reference run's costs" if left >= 5400 else \
            f"; about {left / 60:.0f} min of stage work left at the reference run's costs" if left >= 60 else ""
        return f"-- {n} of {len(self.run.stage_names())} stages finished{when}"


def reference_timings(preset: str, out: Path) -> dict:
    """Wall seconds per chapter in the last run of this preset (out's record, else the book's): the chapters' own
    time, which `remaining_estimate` adds to the stages they run."""
    for record in (out / "reproduce.json", REPO_ROOT / "book" / "executed" / "reproduce.json"):
        if record.exists():
            r = json.loads(record.read_text())
            if r.get("preset") == preset:
                return r.get("notebook_wall_s", {})
    return {}


def reference_stage_work(preset: str) -> dict[str, float]:
    """Work seconds of each stage of the committed reference run of this preset (`results/<preset>/`)."""
    from dgpo_lib.pipeline import work_s
    folder = REPO_ROOT / "results" / preset
    return {p.parent.name: work_s(json.loads(p.read_text())) for p in folder.glob("*/done.json")}


def remaining_estimate(run, stage_cost: dict[str, float], notebooks_left: dict[str, float]) -> str:
    """What is left of the job, priced at the reference run's measured costs: the stages of this config that have
    not finished (each at its work time there) and the chapters still to execute (their own wall time there)."""
    todo = [s for s in run.stage_names() if not run.is_done(s)]
    priced = [s for s in todo if s in stage_cost]
    total = sum(stage_cost[s] for s in priced) + sum(notebooks_left.values())
    if not priced and not notebooks_left:
        return ""
    when = f"about {total / 3600:.1f} h" if total >= 5400 else f"about {total / 60:.0f} min" if total >= 60 \
        else "under a minute"
    n = len(notebooks_left)
    unpriced = f" and {len(todo) - len(priced)} it has no cost for" if len(priced) < len(todo) else ""
    return (f"; {when} of work left at the reference run's costs ({len(priced)} stages to run{unpriced}, "
            f"{n} chapter{'s' if n != 1 else ''})")


def _executed_durations(out: Path, preset: str, skip: set) -> dict:
    """Wall seconds of executed notebooks in `out` (papermill's own record), for those not in `skip`."""
    found = {}
    for p in sorted(out.glob("[0-9][0-9]_*.ipynb")):
        if p.stem in skip:
            continue
        pm_meta = json.loads(p.read_text(encoding="utf-8")).get("metadata", {}).get("papermill", {})
        if pm_meta.get("parameters", {}).get("preset") == preset and pm_meta.get("duration"):
            found[p.stem] = round(pm_meta["duration"], 1)
    return found


def main(argv=None) -> int:
    from dgpo_lib.cli import parse, parser
    ap = parser(__doc__)
    ap.add_argument("--seed", type=int, default=None, help="global seed (default: a seed= override, else 0)")
    ap.add_argument("--out", type=Path, default=None, help="folder for the executed notebooks (default: book/executed "
                    "for cpu, <run_root>/book-<preset> for any other preset)")
    ap.add_argument("--only", nargs="*", help="notebook prefixes to run, e.g. 00 01 (each must match a chapter)")
    ap.add_argument("--ablations", nargs="*", default=None,
                    help="run only these of cfg.eval.ablations in notebook 06 (default: all)")
    ap.add_argument("--no-preflight", action="store_true", help="skip the preflight check (python -m dgpo_lib.pipeline.preflight)")
    a = parse(ap, argv)
    if a.only:  # `--only 05 rl.beta=0.01`: argparse gives the override to --only; it belongs to the overrides
        a.overrides += [o for o in a.only if "=" in o]
        a.only = [o for o in a.only if "=" not in o]
    _STOPPED_BY["signal"] = "Ctrl-C"
    try:
        chapters(a.only)
    except ValueError as e:
        print(f"reproduce: {e}", file=sys.stderr)
        return 2
    if not a.no_preflight:  # in seconds, before hours of work: what is missing and how to fix it
        from dgpo_lib.pipeline import preflight
        rc = preflight.main(["--preset", a.preset, *a.overrides])
        if rc == 2:  # the config itself is wrong: preflight said which key; skipping preflight would not help
            return 2
        if rc != 0:
            print("reproduce: the preflight check found problems (above); fix them, or pass --no-preflight to "
                  "start anyway", file=sys.stderr)
            return 1
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        ov = _dotted_to_nested(a.overrides)
        flat = {}

        def flatten(d, p=""):
            for k, v in d.items():
                if isinstance(v, dict) and k != "n_eval_per_set":
                    flatten(v, p + k + ".")
                else:
                    flat[p + k] = v
        flatten(ov)
        t0 = time.time()
        done = run_notebooks(a.preset, a.seed, flat, a.out, a.only, ablations=a.ablations)
        print(f"reproduce: {len(done)} chapter{'s' if len(done) != 1 else ''} ran in {(time.time() - t0) / 60:.1f} min")
        return 0
    except (ConfigError, NotebookFailed) as e:
        print(f"reproduce: {e}", file=sys.stderr)
        return 1
    except Interrupted as e:
        print(stopped_message(e, _STOPPED_BY["signal"], argv if argv is not None else sys.argv[1:]), file=sys.stderr)
        return 143 if _STOPPED_BY["signal"] == "SIGTERM" else 130


_STOPPED_BY = {"signal": "Ctrl-C"}


def _stop_on_sigterm(signum, frame):
    """SIGTERM ends the job as Ctrl-C does: the same message, exit code 143."""
    _STOPPED_BY["signal"] = "SIGTERM"
    raise KeyboardInterrupt


def stopped_message(e: Interrupted, by: str, argv: list[str]) -> str:
    """One short paragraph: what stopped, what finished and was kept, the command that goes on."""
    import shlex
    where = f" while chapter {e.chapter} executed" if e.chapter else ""
    n = len(e.finished)
    kept = (f"chapter{'s' if n > 1 else ''} {', '.join(e.finished)} {'are' if n > 1 else 'is'} finished and written"
            if e.finished else "no chapter finished, the book's copies are as they were")
    return (f"reproduce: stopped by {by}{where}. Kept: {kept}; {e.stages_done} of {e.stages_total} stages are "
            f"finished in the run folder (a stage that was running resumes from its last checkpoint).\n"
            f"Resume with: {shlex.join([sys.executable.replace(str(REPO_ROOT) + '/', ''), '-m', 'dgpo_lib.book.reproduce', *argv])}")


if __name__ == "__main__":
    sys.exit(main())

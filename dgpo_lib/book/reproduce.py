"""Run every notebook in order with papermill: `python -m dgpo_lib.book.reproduce --preset cpu [key=value ...]`.

Executed notebooks go to `--out` (default `book/executed`, where the book reads them). Each notebook executes into
the run root (`<run_root>/notebooks-<preset>/`) and replaces its copy in `--out` only once it has run to the end, so
stopping the job at any moment leaves the book's chapters as they were. Stages are cached in the run folder, so a
rerun after an interruption picks up where it stopped. A failure names the notebook and cell.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from dgpo_lib.config import ConfigError, _dotted_to_nested, load_config, resolve_seed
from dgpo_lib.data.loaders import REPO_ROOT, repo_path, shown_path
from dgpo_lib.io_utils import atomic_path, atomic_write_json, provenance

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


class NotebookFailed(RuntimeError):
    pass


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
                  only: list[str] | None = None, progress: bool = True, ablations: list[str] | None = None
                  ) -> list[Path]:
    import papermill as pm

    from dgpo_lib.book.job_log import LOG_ENV, LogFollower
    from dgpo_lib.pipeline import Run

    overrides = overrides or {}
    seed = resolve_seed(seed, overrides)
    cfg = load_config(preset, {**overrides, "seed": seed})  # fail fast on a bad key, before any notebook runs
    out = Path(out or REPO_ROOT / "book" / "executed")
    out.mkdir(parents=True, exist_ok=True)
    work = repo_path(cfg.run_root) / f"notebooks-{preset}"  # where notebooks execute; `out` only ever gets finished ones
    work.mkdir(parents=True, exist_ok=True)
    books = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        books = [b for b in books if any(b.stem.startswith(o) for o in only)]
    say = print if progress else (lambda *a, **k: None)
    log_file = work / "main.log"  # every chapter's stage logs and progress bars, shown below as they come
    with open(log_file, "a", encoding="utf-8") as f:
        f.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} reproduce --preset {preset} seed={seed}\n")
    os.environ[LOG_ENV] = str(log_file)  # the kernels inherit it
    follower = LogFollower(log_file).start() if progress else None
    known = reference_timings(preset, out)
    stage_cost = reference_stage_work(preset)
    run = Run(cfg, progress=False)
    say(f"reproduce: {len(books)} chapters, preset {preset}; log {shown_path(log_file)}")
    done, timings = [], {}
    import tempfile
    sockets = tempfile.TemporaryDirectory(prefix="dgpo-kernels-")  # short paths: a socket path has ~100 bytes
    try:
        for i, nb in enumerate(books, 1):
            left = [b.stem for b in books[i - 1:]]
            eta = remaining_estimate(run, stage_cost, {b: known[b] for b in left if b in known})
            say(f"[{i}/{len(books)}] {nb.stem}{eta}", flush=True)
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
                raise NotebookFailed(f"notebook {nb.name} failed in cell {e.cell_index} ({e.exec_count=}): "
                                     f"{e.ename}: {e.evalue}\n(executed copy with the traceback: {running}; "
                                     f"{target} is unchanged; log: {log_file})") from None
            with atomic_path(target, "wb") as f:  # the finished chapter replaces the old one in one rename
                f.write(_hide_injected_parameters(running.read_bytes()))
            timings[nb.stem] = round(time.time() - t0, 1)
            if follower:
                follower.poll()
            say(f"[{i}/{len(books)}] {nb.stem} finished in {timings[nb.stem] / 60:.1f} min", flush=True)
            done.append(target)
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


def _hide_injected_parameters(raw: bytes) -> bytes:
    """The book does not show papermill's injected-parameters cell (the banner says preset, seed and config hash);
    the executed notebook keeps it, tagged remove-cell."""
    nb = json.loads(raw)
    for c in nb["cells"]:
        tags = c.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    return (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode()


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
    ap.add_argument("--out", type=Path, default=None, help="folder for the executed notebooks (default book/executed)")
    ap.add_argument("--only", nargs="*", help="notebook prefixes to run, e.g. 00 01")
    ap.add_argument("--ablations", nargs="*", default=None,
                    help="run only these of cfg.eval.ablations in notebook 06 (default: all)")
    ap.add_argument("--no-preflight", action="store_true", help="skip the preflight check (python -m dgpo_lib.pipeline.preflight)")
    a = parse(ap, argv)
    if not a.no_preflight:  # in seconds, before hours of work: what is missing and how to fix it
        from dgpo_lib.pipeline import preflight
        if preflight.main(["--preset", a.preset, *a.overrides]) != 0:
            print("reproduce: the preflight check found problems (above); fix them, or pass --no-preflight",
                  file=sys.stderr)
            return 1
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
        run_notebooks(a.preset, a.seed, flat, a.out, a.only, ablations=a.ablations)
        print(f"reproduce: all notebooks ran in {(time.time() - t0) / 60:.1f} min")
        return 0
    except (ConfigError, NotebookFailed) as e:
        print(f"reproduce: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

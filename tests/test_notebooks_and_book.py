"""papermill runs every notebook headlessly on the smoke preset; the book builds warning-free from them and
renders in headless Chromium with its tables and figures (screenshots saved under test-output/)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from dgpo_lib.data.loaders import REPO_ROOT

import book_pages  # tests/book_pages.py
from dgpo_lib.book.reproduce import run_notebooks

OUT = REPO_ROOT / "test-output"


@pytest.fixture(scope="module")
def executed(tmp_path_factory, pytestconfig):
    """The ten chapters executed on the smoke preset into `<tmp>/executed` (stages in `<tmp>/runs`); each chapter's
    start and end is written to the terminal, so the few minutes this takes do not look like a hang."""
    base = tmp_path_factory.mktemp("book")
    out, runs = base / "executed", base / "runs"
    tr = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    say = (lambda line: tr.write_line(f"  {line}")) if tr else None
    run_notebooks("smoke", 0, {"run_root": str(runs)}, out, progress=False, say=say)
    return out


def _outputs(nb, kind):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if kind(o)]


def _text(nb):
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            parts.append(o.get("text", "") + json.dumps(o.get("data", {})))
    return "\n".join(parts)


def test_every_notebook_ran_and_produced_its_outputs(executed):
    names = sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert names == sorted(p.stem for p in executed.glob("*.ipynb")) and len(names) == 10
    nbs = {n: nbformat.read(executed / f"{n}.ipynb", as_version=4) for n in names}
    for n, nb in nbs.items():
        assert not _outputs(nb, lambda o: o.output_type == "error"), n
        assert "smoke" in _text(nb), f"{n} does not say which preset made it"
        params = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert params and "preset = \"smoke\"" in params[0].source
    png = lambda o: "image/png" in o.get("data", {})
    for n in ("01_retrieval", "03_teacher_rollouts", "04_kd", "05_ppo_dgpo", "06_ablations", "07_results",
              "08_behaviour"):
        assert _outputs(nbs[n], png), f"{n} has no figure"
        assert "**Figure" in _text(nbs[n]), f"{n} has a figure without caption"
    res_text = _text(nbs["07_results"])
    for label in ("Student (no training)", "Teacher", "PPO", "GKD", "SeqKD", "KD", "DistiLLM", "TAID", "DGPO"):
        assert label in res_text
    assert "paper avg EM" in res_text and "0.329" in res_text  # the paper's DGPO average, labelled as the paper's
    assert "Overview" in nbs["00_overview"].cells[0].source


def test_book_builds_without_warnings_and_renders(executed, tmp_path):
    book = book_pages.book_copy(tmp_path, executed)
    r = book_pages.build(book)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    html = book / "_build" / "html" / "book" / "executed"
    assert (html / "07_results.html").exists() and (html / "05_ppo_dgpo.html").exists()
    chromium = book_pages.chromium_or_skip()
    found = book_pages.check_book(chromium, book / "_build" / "html", tmp_path / "chrome", OUT)
    bad = {name: p for name, r in found.items() if (p := book_pages.problems(r))}
    assert not bad, bad
    assert all((OUT / f"{name}.png").stat().st_size > 10_000 for name in found)
    assert len(found) >= 15, sorted(found)
    chapters = {n.split("__")[-1]: r for n, r in found.items() if "executed" in n}
    assert chapters["07_results"]["tables"] >= 3 and chapters["07_results"]["images"] >= 1
    assert chapters["05_ppo_dgpo"]["tables"] >= 1 and chapters["05_ppo_dgpo"]["images"] >= 2


def test_runner_names_the_failing_notebook_and_cell(tmp_path, monkeypatch):
    import dgpo_lib.book.reproduce as rp
    src = tmp_path / "nbs"
    src.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    p = nbformat.v4.new_code_cell("preset = 'smoke'\nseed = 0\noverrides = {}")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('boom')")]
    nbformat.write(nb, src / "00_fails.ipynb")
    monkeypatch.setattr(rp, "NOTEBOOK_DIR", src)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "00_fails.ipynb").write_text("the chapter as committed")
    with pytest.raises(rp.NotebookFailed, match=r"notebook 00_fails.ipynb failed in cell \d.*ValueError: boom"):
        rp.run_notebooks("smoke", 0, {"run_root": str(tmp_path / "runs")}, tmp_path / "out", progress=False)
    # a chapter that did not run to the end never replaces the book's copy
    assert (tmp_path / "out" / "00_fails.ipynb").read_text() == "the chapter as committed"
    assert (tmp_path / "runs" / "notebooks-smoke" / "00_fails.ipynb").exists()
    assert rp.main(["--preset", "smoke", "--out", str(tmp_path / "out"), "rl.nope=1"]) == 2  # bad key: clear exit


def test_a_rerun_over_finished_stages_leaves_git_status_clean(executed):
    """Executing the chapters again over the same finished stages rewrites nothing: no timestamps, no random
    cell or table ids, no machine paths; the job's record keeps the timings of the run that did the work."""
    repo = executed.parent / "committed"
    shutil.copytree(executed, repo)
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], capture_output=True, text=True, check=True).stdout
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first run")
    run_notebooks("smoke", 0, {"run_root": str(executed.parent / "runs")}, repo, progress=False)
    assert git("status", "--porcelain") == ""
    for p in repo.glob("*.ipynb"):
        meta = json.loads(p.read_text())["metadata"]["papermill"]
        assert not Path(meta["input_path"]).is_absolute() and not Path(meta["output_path"]).is_absolute(), p.name
        assert str(REPO_ROOT) not in p.read_text(), f"{p.name} holds a machine path"


def test_only_must_name_a_chapter(capsys):
    import dgpo_lib.book.reproduce as rp
    assert rp.main(["--preset", "smoke", "--only", "99"]) == 2
    err = capsys.readouterr().err
    assert "--only 99: no chapter starts with 99" in err and "00_overview" in err


def test_overrides_after_only_stay_overrides(capsys):
    import dgpo_lib.book.reproduce as rp
    assert rp.main(["--preset", "smoke", "--only", "05", "rl.nope=1"]) == 2  # the override is read (and refused)
    assert "rl.nope" in capsys.readouterr().err


def test_a_config_error_is_not_told_to_skip_preflight(capsys):
    import dgpo_lib.book.reproduce as rp
    assert rp.main(["--preset", "smoke", "rl.nope=1"]) == 2
    err = capsys.readouterr().err
    assert "rl.nope" in err and "--no-preflight" not in err


def test_only_the_cpu_preset_writes_the_committed_book():
    import dgpo_lib.book.reproduce as rp
    assert rp.default_out("cpu", "runs/cpu") == REPO_ROOT / "book" / "executed"
    assert rp.default_out("smoke", "runs/smoke") == REPO_ROOT / "runs" / "smoke" / "book-smoke"
    assert rp.default_out("paper", "/data/runs") == Path("/data/runs/book-paper")


def test_a_chapter_that_differs_only_in_timestamps_is_the_same():
    import dgpo_lib.book.reproduce as rp
    nb = {"metadata": {"papermill": {"start_time": "a", "end_time": "b", "duration": 1.0, "parameters": {"seed": 0}}},
          "cells": [{"id": "x", "metadata": {"execution": {"iopub.status.busy": "t1"},
                                              "papermill": {"duration": 0.5, "status": "completed"}},
                     "outputs": [{"text": "EM 0.35"}]}]}
    later = json.loads(json.dumps(nb))
    later["metadata"]["papermill"].update(start_time="c", duration=2.0)
    later["cells"][0]["metadata"].update(execution={"iopub.status.busy": "t2"})
    later["cells"][0]["metadata"]["papermill"]["duration"] = 0.7
    assert rp.same_but_timestamps(json.dumps(nb).encode(), json.dumps(later).encode())
    later["cells"][0]["outputs"][0]["text"] = "EM 0.36"
    assert not rp.same_but_timestamps(json.dumps(nb).encode(), json.dumps(later).encode())
    assert not rp.same_but_timestamps(b"not json", json.dumps(nb).encode())


def test_ctrl_c_stops_the_main_job_with_one_message_and_a_second_run_resumes(tmp_path):
    """SIGINT to the job's process group (what Ctrl-C sends) while chapter 01 executes: no traceback, a message of
    what was kept and how to resume, exit code 130; the resumed run starts from the finished stages."""
    import os
    import signal
    import time
    runs, out = tmp_path / "runs", tmp_path / "out"
    cmd = [sys.executable, "-m", "dgpo_lib.book.reproduce", "--preset", "smoke", "--no-preflight", "--out", str(out),
           f"run_root={runs}", "--only", "00", "01"]
    # SIGINT handled, as from a shell (a pytest-xdist worker ignores it, and children inherit an ignored signal)
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.time()
    while not (runs / "notebooks-smoke" / "01_retrieval.ipynb").exists():
        assert proc.poll() is None and time.time() - t0 < 300, "the job ended or stalled before chapter 01"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout[-2000:] + stderr[-2000:]
    assert "Traceback" not in stderr + stdout and "KeyboardInterrupt" not in stderr + stdout, stderr[-3000:]
    assert "stopped by Ctrl-C while chapter 01_retrieval executed" in stderr
    assert "chapter 00_overview is finished and written" in stderr
    assert "Resume with:" in stderr and "dgpo_lib.book.reproduce" in stderr and f"run_root={runs}" in stderr
    (tmp_path / "stopped.txt").write_text(stderr)
    r = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "2 chapters ran" in r.stdout
    assert {p.name for p in out.glob("*.ipynb")} == {"00_overview.ipynb", "01_retrieval.ipynb"}


def test_sigterm_ends_the_job_like_ctrl_c_with_exit_code_143(tmp_path):
    import signal
    import time
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "dgpo_lib.book.reproduce", "--preset", "smoke", "--no-preflight",
                             "--out", str(tmp_path / "out"), f"run_root={runs}", "--only", "00"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.time()
    while not (runs / "notebooks-smoke" / "00_overview.ipynb").exists():
        assert proc.poll() is None and time.time() - t0 < 300, "the job ended or stalled before chapter 00"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # to the job alone, as a scheduler or `kill` does
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stdout[-2000:] + stderr[-2000:]
    assert "stopped by SIGTERM while chapter 00_overview executed" in stderr and "Traceback" not in stderr
    time.sleep(3)  # a kernel left behind would notice its parent is gone within a second or two
    assert _children_of(proc.pid) == [], "a kernel of the stopped job is still running"


def _children_of(pid: int) -> list[int]:
    """Processes that jupyter_client started for `pid` (it sets JPY_PARENT_PID in their environment)."""
    found = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"JPY_PARENT_PID={pid}".encode() in env.read_bytes().split(b"\0"):
                found.append(int(env.parent.name))
        except OSError:
            pass
    return found

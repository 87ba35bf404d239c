"""The book readers get: the committed `cpu` chapters in `book/executed/` build with -W and pass the page check at
1280 px, a main job killed mid-chapter leaves them buildable, and the page check itself sees what it should."""
import subprocess
import sys

import nbformat

import book_pages  # tests/book_pages.py
from dgpo_lib.data.loaders import REPO_ROOT

OUT = REPO_ROOT / "test-output"


def test_the_committed_book_passes_the_page_check(tmp_path):
    """The book readers get (the committed `cpu` chapters in `book/executed/`), built with -W and read page by page
    at 1280 px as the smoke book is: nothing wider than the column, no raw TeX, warnings, reprs or console errors;
    screenshots under test-output/committed/."""
    chromium = book_pages.chromium_or_skip()
    book = book_pages.book_copy(tmp_path, REPO_ROOT / "book" / "executed")
    r = book_pages.build(book)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    shots = OUT / "committed"
    found = book_pages.check_book(chromium, book / "_build" / "html", tmp_path / "chrome", shots)
    bad = {name: p for name, r in found.items() if (p := book_pages.problems(r))}
    assert not bad, bad
    for chapter in ("00_overview", "04_kd", "05_ppo_dgpo", "07_results"):
        assert (shots / f"book__executed__{chapter}.png").stat().st_size > 10_000, chapter


def test_page_check_sees_wide_tables_raw_tex_and_warnings(tmp_path):
    """The checker itself, on a page made to fail each way (and one that passes)."""
    chromium = book_pages.chromium_or_skip()
    cells = "".join(f"<td>column{i}</td>" for i in range(60))
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><article style='width:600px'><table><tr>" + cells + "</tr></table>"
                   "<p>the KL is \\(\\beta\\) here</p><div class='cell_output'><pre>/usr/lib/x.py:3: UserWarning: "
                   "careful</pre></div></article></body></html>")
    report = book_pages.check_page(chromium, bad, tmp_path / "chrome")
    assert report["wide"] and report["latex"] and report["warnings"], report
    good = tmp_path / "good.html"
    good.write_text("<html><body><article style='width:600px'><table><tr><td>0.35</td></tr></table>"
                    "<pre>print(1)</pre><div class='cell_output'><pre>EM 0.35</pre></div></article></body></html>")
    assert book_pages.problems(book_pages.check_page(chromium, good, tmp_path / "chrome")) == []


def test_killing_the_main_job_mid_notebook_leaves_a_book_that_builds(tmp_path):
    """SIGKILL while a chapter executes: the book's copies are untouched (or replaced by finished chapters only),
    and `jupyter-book build -W` still succeeds from them."""
    import os
    import signal
    import time
    book = book_pages.book_copy(tmp_path, REPO_ROOT / "book" / "executed")
    before = {p.name: p.read_bytes() for p in (book / "book" / "executed").glob("*.ipynb")}
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "dgpo_lib.book.reproduce", "--preset", "smoke", "--out",
                             str(book / "book" / "executed"), f"run_root={runs}"], cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while not (runs / "notebooks-smoke" / "01_retrieval.ipynb").exists():  # chapter 01 is executing
        assert proc.poll() is None and time.time() - t0 < 300, "the job ended or stalled before chapter 01"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the job and its kernel
    proc.wait()
    after = {p.name: p.read_bytes() for p in (book / "book" / "executed").glob("*.ipynb")}
    assert set(after) == set(before)
    for name, data in after.items():  # each chapter is the committed one or a finished execution
        if data != before[name]:
            nb = nbformat.reads(data.decode(), as_version=4)
            assert name == "00_overview.ipynb" and all(c.get("execution_count") for c in nb.cells
                                                       if c.cell_type == "code"), name
    assert after["01_retrieval.ipynb"] == before["01_retrieval.ipynb"]
    r = book_pages.build(book)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

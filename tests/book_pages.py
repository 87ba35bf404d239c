"""Every page of a built book, as headless Chromium renders it at 1280 px: a screenshot each, and what a reader
would trip over (tables, code, display math or outputs wider than the text column, raw TeX, warnings, log lines,
machine paths or Python object reprs in executed outputs, script errors on the console), measured in the browser
by page_check.js."""
from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from dgpo_lib.data.loaders import REPO_ROOT

CHECK_JS = Path(__file__).with_name("page_check.js")
# first in <head>, before the page's own scripts: every script error and console.error of the page, for the report
ERRORS_JS = ("<script>window.__pageErrors = []; window.addEventListener('error', function (e) { "
             "window.__pageErrors.push(e.message || String(e)); }); (function () { var ce = console.error; "
             "console.error = function () { window.__pageErrors.push([].join.call(arguments, ' ')); "
             "return ce.apply(console, arguments); }; })();</script>")
WIDTH = 1280


def chromium_or_skip() -> str:
    """Debian's Chromium, or the calling test is skipped (scripts/setup.sh installs it where apt works)."""
    import pytest

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it where apt works)")
    return found


def chromium_flags(profile: Path) -> list[str]:
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", f"--window-size={WIDTH},2400", "--virtual-time-budget=20000"]


def pages(html_root: Path) -> list[Path]:
    """The book's pages (not Sphinx's search/genindex pages)."""
    skip = {"search.html", "genindex.html", "py-modindex.html"}
    return sorted(p for p in html_root.rglob("*.html") if p.name not in skip and "_static" not in p.parts
                  and "_sources" not in p.parts)


def check_page(chromium: str, page: Path, profile: Path, shot: Path | None = None) -> dict:
    """Inject the checker into `page` (a scratch copy), render it, return its report; screenshot to `shot`."""
    text = page.read_text(encoding="utf-8")
    if 'id="page-check-js"' not in text:
        text = text.replace("</body>", f'<script id="page-check-js">{CHECK_JS.read_text()}</script></body>')
        text = re.sub(r"<head([^>]*)>", lambda m: f"<head{m.group(1)}>{ERRORS_JS}", text, count=1)
        page.write_text(text, encoding="utf-8")
    flags = chromium_flags(profile)
    for attempt in range(2):  # a headless Chromium now and then returns before the page's scripts ran: once more
        dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                             timeout=180).stdout
        m = re.search(r'id="page-check" data-report="([^"]*)"', dom)
        if m is not None:
            break
    else:
        return {"error": "the page never finished loading (twice)", "tables": 0, "images": 0}
    report = json.loads(html_lib.unescape(m.group(1)))
    report["tables"], report["images"] = dom.count("<table"), dom.count("<img")
    if shot is not None:
        subprocess.run([chromium, *flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=180)
    return report


def problems(report: dict) -> list[str]:
    return ([report["error"]] if "error" in report else []) + [
        f"{kind}: {item}" for kind in ("wide", "latex", "warnings", "errors") for item in report.get(kind, [])]


def check_book(chromium: str, html_root: Path, profiles: Path, shots: Path) -> dict[str, dict]:
    """`check_page` on every page of a built book, a fresh Chromium profile each (every page as a first visit, as a
    reader arriving from a link): {page name: report}, screenshots in `shots`."""
    shots.mkdir(parents=True, exist_ok=True)
    out = {}
    for page in pages(html_root):
        name = str(page.relative_to(html_root).with_suffix("")).replace("/", "__")
        out[name] = check_page(chromium, page, profiles / name, shots / f"{name}.png")
    return out


def book_copy(tmp_path: Path, executed: Path) -> Path:
    """The book's sources in a scratch folder, with `executed` as its executed chapters."""
    book = tmp_path / "book_src"
    (book / "book").mkdir(parents=True)
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO_ROOT / f, book / f)
    for f in (REPO_ROOT / "book").glob("*.*"):
        shutil.copy(f, book / "book" / f.name)
    shutil.copytree(REPO_ROOT / "book" / "_static", book / "book" / "_static")  # the stylesheet
    shutil.copytree(REPO_ROOT / "book" / "_ext", book / "book" / "_ext")  # the bibliography style
    shutil.copytree(REPO_ROOT / "book" / "figures", book / "book" / "figures")  # the diagrams
    shutil.copytree(executed, book / "book" / "executed")
    # what pages include verbatim: library functions, the preflight reports, benchmark tables
    shutil.copytree(REPO_ROOT / "dgpo_lib", book / "dgpo_lib", ignore=shutil.ignore_patterns("__pycache__"))
    for sub in ("results/preflight", "results/transcripts", "benchmarks/results"):
        shutil.copytree(REPO_ROOT / sub, book / sub)
    return book


def build(book: Path) -> subprocess.CompletedProcess:
    """`jupyter-book build -W -n --keep-going` of a `book_copy`."""
    jb = Path(sys.executable).parent / "jupyter-book"  # the one installed beside this interpreter
    return subprocess.run([str(jb) if jb.exists() else "jupyter-book", "build", str(book), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, timeout=600)

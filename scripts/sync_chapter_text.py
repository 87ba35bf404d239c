"""Carry the prose of `notebooks/*.ipynb` into the executed chapters in `book/executed/` without executing them:
`python scripts/sync_chapter_text.py [--check]`.

A chapter's prose is updated only when its code cells are exactly those of the executed copy (so every output
still belongs to the code above it); the markdown between them is replaced by the source's. A chapter whose code
changed keeps its prose and is named: it needs `python -m dgpo_lib.book.reproduce --only NN`. Every chapter gets
the metadata the main job writes (`reproduce.finished_chapter`: repository-relative paths, no machine's folders).
`--check` writes nothing and exits 1 if any chapter would change.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dgpo_lib.book.reproduce import finished_chapter  # noqa: E402


def _segments(cells: list[dict]) -> tuple[list[str], list[list[dict]]]:
    """The code cells' sources in order, and the markdown cells before, between and after them."""
    code, prose, run = [], [], []
    for c in cells:
        if c["cell_type"] == "code":
            prose.append(run)
            run = []
            code.append("".join(c["source"]) if isinstance(c["source"], list) else c["source"])
        else:
            run.append(c)
    prose.append(run)
    return code, prose


def _text(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def synced(source: dict, executed: dict) -> dict | None:
    """`executed` with the markdown of `source`, or None when their code cells differ. A markdown cell whose text
    is unchanged is kept as it is (its id and metadata)."""
    kept = [c for c in executed["cells"] if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    src_code, src_prose = _segments(source["cells"])
    ex_code, _ = _segments(kept)
    if src_code != ex_code:
        return None
    injected = [c for c in executed["cells"] if c not in kept]
    code_cells = [c for c in kept if c["cell_type"] == "code"]
    _, ex_prose = _segments(kept)
    out = []
    for i, run in enumerate(src_prose):
        old = ex_prose[i] if i < len(ex_prose) else []
        out += old if [_text(c) for c in run] == [_text(c) for c in old] else [dict(c) for c in run]
        if i < len(code_cells):
            out.append(code_cells[i])
            if "parameters" in code_cells[i].get("metadata", {}).get("tags", []):
                out += injected  # papermill's cell stays right after the parameters cell
    return {**executed, "cells": out}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if any chapter's prose differs")
    a = ap.parse_args(argv)
    stale, differs = [], []
    for src in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        target = REPO / "book" / "executed" / src.name
        if not target.exists():
            continue
        executed = json.loads(target.read_text(encoding="utf-8"))
        new = synced(json.loads(src.read_text(encoding="utf-8")), executed)
        if new is None:
            stale.append(src.stem)
            new = executed
        new = json.loads(finished_chapter(json.dumps(new).encode(), src, target))
        if new != executed:
            differs.append(src.stem)
            if not a.check:
                tmp = target.with_suffix(".tmp")
                tmp.write_text(json.dumps(new, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
                tmp.replace(target)
    print(f"{'would change' if a.check else 'updated'}: {', '.join(differs) or 'no chapter'}")
    if stale:
        print(f"code changed, prose not carried (execute them again): {', '.join(stale)}")
    return 1 if a.check and differs else 0


if __name__ == "__main__":
    sys.exit(main())

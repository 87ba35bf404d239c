"""Draw the book's diagrams (no data in them) into book/figures/: `python scripts/draw_figures.py`."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from dgpo_lib.book.diagrams import pipeline_diagram, save  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "book" / "figures"

if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    save(pipeline_diagram(), OUT / "pipeline.svg")
    print(f"wrote {OUT / 'pipeline.svg'}")

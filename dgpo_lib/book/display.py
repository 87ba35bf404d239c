"""Showing things in a chapter: the book's plot style, numbered figure captions, tables as the book shows them,
measured figures and myst-nb glue."""
from __future__ import annotations

import pandas as pd

_FIG_NO = [0]
_TABLE_NO = [0]


def stable_table_output() -> None:
    """Every pandas table a chapter displays gets the id `t<n>` (its order in the chapter) and a plain-text form
    of its cells, instead of pandas' random id and a repr with a memory address: executing a chapter again over
    the same results writes the same bytes (a rerun leaves `git status` clean). IPython's formatters for the type
    take precedence over the object's own `_repr_html_`."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    from pandas.io.formats.style import Styler

    ip = get_ipython()
    if ip is None:
        return

    def html(st: Styler) -> str:
        _TABLE_NO[0] += 1
        return st.set_uuid(f"t{_TABLE_NO[0]}").to_html()

    def plain(st: Styler, printer, cycle) -> None:
        printer.text((f"{st.caption}\n" if st.caption else "") + st.data.to_string())

    ip.display_formatter.formatters["text/html"].for_type(Styler, html)
    ip.display_formatter.formatters["text/plain"].for_type(Styler, plain)


def set_style():
    import matplotlib
    import seaborn as sns

    matplotlib.rcParams.update({"figure.dpi": 110, "savefig.bbox": "tight", "axes.titleweight": "bold"})
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    stable_table_output()


def show(fig, caption: str):
    """Display a figure followed by its numbered caption (part of the executed output, so the book shows it)."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    _FIG_NO[0] += 1
    display(fig)
    plt.close(fig)
    display(Markdown(f"**Figure {_FIG_NO[0]}.** {caption}"))


def table(data, caption: str | None = None, fmt: str | dict | None = "{:.3f}", index: str | None = None):
    """A table as the book shows it: the row labels as a named first column (no unnamed pandas index), every
    cell in full (no "..." truncation), floats formatted, an optional caption above it.

    `data`: a DataFrame, a list of row dicts, or a {row: {column: value}} dict (rows become the first column,
    named `index`). `fmt`: a format string for the float columns, a {column: format} dict, or a function for
    every cell."""
    if isinstance(data, dict):
        data = pd.DataFrame(data).T
    df = pd.DataFrame(data)
    if not isinstance(df.index, pd.RangeIndex) or df.index.name or index:
        df = df.reset_index(names=index or df.index.name or "")
    df.columns = [str(c).replace("_", " ") for c in df.columns]  # headers wrap between words
    floats = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
    st = df.style.hide(axis="index")
    if callable(fmt):  # one function for every cell (tables whose columns mix kinds)
        st = st.format(fmt, na_rep="–")
    elif fmt:
        whole = {c for c in floats  # counts that went through floats (not scores that happen to be 0 or 1)
                 if df[c].dropna().apply(float.is_integer).all() and df[c].abs().max() >= 2}
        st = st.format(fmt if isinstance(fmt, dict) else {c: "{:,.0f}" if c in whole else fmt for c in floats},
                       na_rep="–")
    return st.set_caption(caption) if caption else st


def measured(v) -> str:
    """A measured figure at four significant digits (big counts in full), anything else as it is."""
    if isinstance(v, float) and v == v:
        return f"{v:,.0f}" if abs(v) >= 1e5 else f"{v:.4g}"
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def upright(df: pd.DataFrame, max_cols: int = 6) -> pd.DataFrame:
    """A table with many columns and few rows, turned so that it fits the page: one column per row of `df`
    (named by its text fields), one row per measured quantity."""
    if df.shape[1] <= max_cols or len(df) > max_cols:
        return df
    labels = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c]) or c in ("batch", "nprobe")]
    names = df[labels].astype(str).agg(" ".join, axis=1) if labels else df.index.astype(str)
    out = df.drop(columns=labels).T
    out.columns = list(names)
    out.index.name = "quantity"
    return out


def facts(d: dict, caption: str | None = None):
    """A {what: value} dict as a two-column table (instead of printing the dict), each value as `measured`."""
    return table(pd.DataFrame({"": list(d), "value": [measured(v) for v in d.values()]}), caption, fmt=None)


def say(markdown: str) -> None:
    """Show computed Markdown (a reading, a box) under the cell; nothing at all when it is empty (an empty
    Markdown object would show its Python repr instead)."""
    from IPython.display import Markdown, display

    if markdown and markdown.strip():
        display(Markdown(markdown))


def glue(name: str, value, display: bool = False):
    """myst-nb glue (numbers in prose come from the run); a plain no-op outside Jupyter Book's toolchain."""
    try:
        from myst_nb import glue as _glue
        _glue(name, value, display=display)
    except ImportError:
        pass
    return value

"""Each inline script once per page. sphinx-thebe's set-up runs twice under Jupyter Book 1.x (it is loaded both as a
default extension and by the book theme), so every page declared `const THEBE_JS_URL` twice: a console
SyntaxError on every page. Identical script tags are dropped when the page is written."""


def _drop_repeats(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for js in context.get("script_files", []):
        # the same file or body with the same attributes, whatever priority each copy has (an inline script is
        # filed under "" by one caller and None by the other)
        key = (str(getattr(js, "filename", js) or ""), repr(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"][:] = kept  # in place: later handlers (MathJax on pages with math) append to this list


def setup(app):
    # early: the event stops at the first handler that returns a template name, and the repeats are there already
    app.connect("html-page-context", _drop_repeats, priority=1)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

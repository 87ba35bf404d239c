"""Alt text for the chapters' plots. myst-nb names an output image by its hash and uses that file name as the alt
text; every plot of this book is followed by its computed caption (`**Figure N.** ...`, `dgpo_lib/book/display.py`
`show`), so each image without an alt gets its caption's text: what a screen reader or a broken image says."""
import re

from docutils import nodes

_FIGURE = re.compile(r"^Figure \d+\.\s*")


def caption_after(image: nodes.image) -> str | None:
    """The text of the first `Figure N.` paragraph after `image` in document order, unless another image comes
    first (then that caption is the other image's)."""
    for node in image.findall(include_self=False, descend=True, siblings=True, ascend=True):
        if isinstance(node, nodes.image):
            return None
        if isinstance(node, nodes.paragraph):
            text = node.astext().strip()
            if _FIGURE.match(text):
                return _FIGURE.sub("", text)
    return None


def _add_alt(app, doctree, docname):
    for image in doctree.findall(nodes.image):
        if image.get("alt"):
            continue
        caption = caption_after(image)
        if caption:
            image["alt"] = caption


def setup(app):
    app.connect("doctree-resolved", _add_alt)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

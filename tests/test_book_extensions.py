"""The book's Sphinx extensions (book/_ext) on hand-built doctrees."""
import sys

from docutils import nodes
from docutils.utils import new_document
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser

from dgpo_lib.data.loaders import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "book" / "_ext"))
import figure_alt  # noqa: E402


def _doc():
    return new_document("test", get_default_settings(Parser))


def test_each_plot_gets_the_caption_that_follows_it_as_alt_text_and_keeps_an_alt_it_has():
    doc = _doc()
    out1, out2, out3 = nodes.container(), nodes.container(), nodes.container()
    first, second, third = nodes.image(uri="a.png"), nodes.image(uri="b.png"), nodes.image(uri="c.png", alt="kept")
    out1 += first
    out1 += nodes.paragraph(text="Figure 1. Validation EM per step.")
    out2 += second  # no caption of its own: the next caption belongs to the third image
    out3 += third
    out3 += nodes.paragraph(text="Figure 2. Rollout rate.")
    doc += [nodes.paragraph(text="Figure 0. Before any image."), out1, out2, out3]
    figure_alt._add_alt(None, doc, "x")
    assert first["alt"] == "Validation EM per step."
    assert "alt" not in second.attributes or not second["alt"]
    assert third["alt"] == "kept"

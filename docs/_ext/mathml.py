"""Sphinx extension: typeset maths as MathML when the pages are built.

Sphinx's default puts the LaTeX source in the page and loads MathJax from a
CDN to typeset it in the reader's browser, so a page read offline shows raw
LaTeX. Here every ``:math:`` role and ``.. math::`` block is converted to
MathML by ``latex2mathml`` (pure Python) during the build, and browsers
draw MathML themselves (MathML Core: Chromium 109+, Firefox, Safari): no
script, no font download, nothing fetched. A formula that does not convert,
or converts leaving a LaTeX command behind as text, is reported as a
warning (an error under ``sphinx-build -W``) naming the document and line.
"""
import html
import re

from docutils import nodes
from sphinx.locale import _
from sphinx.util import logging
from sphinx.util.math import get_node_equation_number

import latex2mathml.converter

logger = logging.getLogger(__name__)

#: A LaTeX command left in the MathML as text: one latex2mathml does not know.
_LEFTOVER_COMMAND = re.compile(r"\\[A-Za-z]+")


def to_mathml(latex, display, node):
    """``latex`` as a ``<math>`` element (``display`` "inline" or "block"),
    or the escaped source with a warning located at ``node``."""
    try:
        mathml = latex2mathml.converter.convert(latex, display=display)
    except Exception as err:  # latex2mathml raises many kinds on bad input
        logger.warning("cannot typeset %r as MathML: %s", latex, err, location=node)
        return f'<code class="math">{html.escape(latex)}</code>'
    leftover = _LEFTOVER_COMMAND.findall(re.sub(r"<[^>]*>", "", mathml))
    if leftover:
        logger.warning("MathML of %r keeps the unknown LaTeX command(s) %s", latex,
                       ", ".join(sorted(set(leftover))), location=node)
    return mathml


def _display_parts(node):
    """The equations of a display block: paragraphs of its source, each in a
    ``split`` environment when it has several lines, as Sphinx's MathJax
    output wraps them (unless the block is ``:nowrap:``)."""
    if node.get("nowrap"):
        return [node.astext()]
    parts = [part for part in node.astext().split("\n\n") if part.strip()]
    return [r"\begin{split}" + part + r"\end{split}" if r"\\" in part else part
            for part in parts]


def visit_math(self, node):
    self.body.append(self.starttag(node, "span", "", CLASS="math notranslate"))
    self.body.append(to_mathml(node.astext(), "inline", node))
    self.body.append("</span>")
    raise nodes.SkipNode


def visit_displaymath(self, node):
    self.body.append(self.starttag(node, "div", CLASS="math notranslate"))
    if node["number"]:
        number = get_node_equation_number(self, node)
        self.body.append(f'<span class="eqno">({number})')
        self.add_permalink_ref(node, _("Link to this equation"))
        self.body.append("</span>")
    for part in _display_parts(node):
        self.body.append(to_mathml(part, "block", node))
    self.body.append("</div>\n")
    raise nodes.SkipNode


def setup(app):
    app.add_html_math_renderer("mathml", (visit_math, None), (visit_displaymath, None))
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

"""A griffe extension for the docs site: pathgeom's numpydoc docstrings write maths and
cross-references in reST (``:math:`\\kappa```, ``.. math::`` blocks, ``:func:`x```);
the site is Markdown.  This turns them into what the site renders -- ``$...$`` and
``$$...$$`` for pymdownx.arithmatex (MathJax), code spans for the roles -- when the API
pages are built.  The docstrings themselves (and their doctests) are unchanged.
"""

import re

try:
    from griffe import Extension
except ImportError:  # without the [docs] extra there is nothing to extend
    Extension = object

_ROLE = re.compile(r":(?:func|class|meth|attr|data|mod|obj|exc):`~?([^`]+)`")
_MATH = re.compile(r":math:`([^`]+)`")


def _role(m):
    """``:func:`~pathgeom.x.y``` -> `` `y` ``; ``:func:`pathgeom.x``` -> `` `pathgeom.x` ``."""
    target = m.group(1)
    return f"`{target.split('.')[-1]}`" if m.group(0).count("`~") else f"`{target}`"


def convert(text):
    """The docstring ``text`` with reST maths and roles in Markdown."""
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped == ".. math::":
            indent = len(line) - len(line.lstrip())
            body, i = [], i + 1
            while i < len(lines) and (not lines[i].strip()
                                      or len(lines[i]) - len(lines[i].lstrip()) > indent):
                body.append(lines[i].strip())
                i += 1
            while body and not body[-1]:
                body.pop()
            pad = " " * indent
            out += [pad + "$$", *(pad + b for b in body if b), pad + "$$", ""]
            continue
        out.append(line)
        i += 1
    text = "\n".join(out)  # roles may span lines: substitute on the whole text
    text = _MATH.sub(lambda m: "$" + " ".join(m.group(1).split()) + "$", text)
    return _ROLE.sub(_role, text)


class RestToMarkdown(Extension):
    """Convert every loaded object's docstring with :func:`convert`."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)

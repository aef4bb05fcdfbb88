"""mkdocs hook: every script and stylesheet a built page loads ships with the site.

- Maths: MathJax 3 (``tex-mml-chtml.js``, its CHTML fonts, the TeX extensions it
  autoloads, its menu and accessibility components, and its licence) is copied from the
  Python package ``django-static-mathjax`` (MathJax 3.2.2 as static files, no Django
  needed; the ``[docs]`` extra installs it) into ``js/mathjax/`` of the site.  Its speech
  engine (``sre``, 3.9 MB) is left out: it is used only when a reader turns on speech
  output in MathJax's menu.
- Code: highlighted at build time by Pygments (the ``codehilite`` extension, and
  mkdocstrings for the API page); the colours are written to ``css/pygments.css``.  The
  theme's highlight.js, which loads from a CDN, is off (``highlightjs: false``).

Nothing is fetched at build time or when a page is read.
"""

import os
import shutil

#: What of MathJax's ``es5`` directory the site needs, relative to it.
MATHJAX_PARTS = ("tex-mml-chtml.js", "output/chtml", "input/tex/extensions", "ui", "a11y",
                 "adaptors")


def mathjax_es5():
    """The ``es5`` directory of the installed MathJax files; an error naming the install
    command when they are missing."""
    try:
        import mathjax  # the django-static-mathjax package (MathJax's files, no Django)
    except ImportError:
        mathjax = None
    root = None if mathjax is None else os.path.join(
        os.path.dirname(mathjax.__file__), "static", "mathjax")
    if root is None or not os.path.isfile(os.path.join(root, "es5", "tex-mml-chtml.js")):
        from mkdocs.exceptions import PluginError
        raise PluginError("the site ships MathJax, whose files come from the Python package "
                          "django-static-mathjax: pip install -e '.[docs]'")
    return os.path.join(root, "es5"), os.path.join(root, "LICENSE")


def on_config(config):
    mathjax_es5()   # fail before building, not after
    return config


def on_post_build(config):
    site = config["site_dir"]
    es5, licence = mathjax_es5()
    dest = os.path.join(site, "js", "mathjax")
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    for part in MATHJAX_PARTS:
        src, out = os.path.join(es5, part), os.path.join(dest, part)
        if os.path.isdir(src):
            shutil.copytree(src, out)
        else:
            os.makedirs(os.path.dirname(out), exist_ok=True)
            shutil.copyfile(src, out)
    shutil.copyfile(licence, os.path.join(dest, "LICENSE"))
    from pygments.formatters import HtmlFormatter
    os.makedirs(os.path.join(site, "css"), exist_ok=True)
    with open(os.path.join(site, "css", "pygments.css"), "w", encoding="utf-8") as f:
        f.write(HtmlFormatter(style="default").get_style_defs(".highlight"))

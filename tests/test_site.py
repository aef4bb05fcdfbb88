"""The documentation site builds with warnings as errors, loads nothing from the network,
and renders its maths in a real browser: the API page and a concept page are opened in
headless Chromium, offline, and the rendered page shows no raw TeX delimiters or reST roles.

Needs the [docs] extra (mkdocs, mkdocstrings, MathJax's files) and Debian's ``chromium``
package; the test installs Chromium with apt-get when it is missing and it can (as root),
and otherwise skips, naming the command.
"""

import html.parser
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
INSTALL = "apt-get update && apt-get install -y chromium"
PAGES = ("api/index.html", "concepts/path-regularizer/index.html")
RAW = ("$$", "\\(", "\\)", "\\[", "\\]", ":math:", ":func:", ":class:", ":meth:", ":attr:",
       ":mod:", ":data:")


def _chromium():
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run("apt-get update -qq && apt-get install -y -qq chromium", shell=True,
                       env=env, capture_output=True, timeout=900)
        if shutil.which("chromium"):
            return shutil.which("chromium")
    pytest.skip(f"headless Chromium is not installed and could not be installed here; "
                f"install it with: {INSTALL}")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="needs the [docs] extra: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings")
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d",
                          str(out)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return out


def test_every_script_and_stylesheet_ships_with_the_site(site):
    remote = re.compile(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=\"(?:https?:)?//[^\"]*\"")
    pages = list(site.rglob("*.html"))
    assert len(pages) > 10
    for page in pages:
        text = page.read_text(encoding="utf-8")
        found = remote.findall(text)
        assert not found, f"{page.relative_to(site)} loads {found[0]}"
        for src in re.findall(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", text):
            src = src.split("?")[0]
            target = (site / src[1:] if src.startswith("/") else page.parent / src).resolve()
            assert target.is_file(), f"{page.relative_to(site)}: {src} is not in the site"
    assert (site / "js" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    assert ".highlight" in (site / "css" / "pygments.css").read_text()


class _Visible(html.parser.HTMLParser):
    """The text a reader sees: without scripts, styles, code and MathJax's hidden MathML."""

    SKIP = {"script", "style", "code", "pre", "mjx-assistive-mml", "noscript", "head"}

    def __init__(self):
        super().__init__()
        self.depth, self.parts, self.math, self.errors = 0, [], 0, 0

    def handle_starttag(self, tag, attrs):
        if tag == "mjx-container":
            self.math += 1
        if tag == "mjx-merror" or any(k == "data-mjx-error" for k, _ in attrs):
            self.errors += 1
        if tag in self.SKIP:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if not self.depth:
            self.parts.append(data)


def _rendered(chromium, page):
    """The DOM of ``page`` after its scripts ran, from headless Chromium with the network
    cut off (a proxy that does not exist)."""
    run = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                          "--allow-file-access-from-files", "--proxy-server=127.0.0.1:9",
                          "--virtual-time-budget=20000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


@pytest.mark.parametrize("name", PAGES)
def test_pages_render_maths_offline_in_chromium(site, name):
    chromium = _chromium()
    source = (site / name).read_text(encoding="utf-8")
    dom = _rendered(chromium, site / name)
    seen = _Visible()
    seen.feed(dom)
    text = "".join(seen.parts)
    assert len(text) > 1000, "the page did not render"
    for raw in RAW:
        at = text.find(raw)
        assert at < 0, f"{name} shows {raw!r} raw: ...{text[max(at - 80, 0):at + 80]}..."
    assert seen.errors == 0, f"{name}: MathJax reports {seen.errors} maths input errors"
    formulas = source.count('class="arithmatex"')
    assert seen.math >= formulas      # every formula of the built page was typeset
    if name.startswith("api"):
        assert formulas > 100

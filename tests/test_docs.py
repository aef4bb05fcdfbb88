"""The README quickstart and the example scripts run, and show their real output."""

import contextlib
import io
import pathlib
import re
import runpy
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _blocks(text):
    return re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S)


def test_readme_quickstart_output_is_real():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1]
    blocks = _blocks(section)
    code = next(body for lang, body in blocks if lang == "python")
    shown = next(body for lang, body in blocks if lang == "")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, "README.md", "exec"), {})
    assert buf.getvalue().strip() == shown.strip()


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_example_runs(script):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        runpy.run_path(str(script), run_name="__main__")
    assert buf.getvalue().strip(), f"{script.name} printed nothing"


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "pathgeom", "demo", "--T", "3", "--H", "2",
                          "--big-T", "5", "--big-H", "4", "--race-T", "5", "--race-H", "4",
                          "--race-steps", "20", "--race-plot", "", "--invariance-steps",
                          "20", "--invariance-plot", ""], capture_output=True,
                         text=True, check=True).stdout
    assert out.index("Rescaling invariance in training") < out.index("Lemma 1")
    assert "Path-SGD: the two runs' losses differ by at most" in out
    assert "largest relative error of kappa1 + kappa2 against the definition" in out
    assert "eq.(10) / exact kappa2 = 0.5, eq.(11) / exact = 0.25" in out
    assert "nan" not in out
    assert "rescaling group dimension: 2" in out and "\nverdict: " in out


def test_docstring_markup_is_converted_for_the_site():
    """The API pages render maths and references: the reST roles and ``.. math::`` blocks of
    the docstrings become arithmatex maths and code spans (docs/griffe_rest.py)."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "docs" / "griffe_rest.py"
    spec = importlib.util.spec_from_file_location("griffe_rest", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = ("The step :math:`p - \\eta\\, g /\n    \\kappa` of :func:`~pathgeom.optim.path_sgd_step`"
            " and :class:`pathgeom.SharedGraph`.\n\n    .. math::\n\n        a = b\n        + c\n\n"
            "    after")
    out = mod.convert(text)
    assert "$p - \\eta\\, g / \\kappa$" in out
    assert "`path_sgd_step`" in out and "`pathgeom.SharedGraph`" in out
    assert "    $$\n    a = b\n    + c\n    $$" in out and out.rstrip().endswith("after")
    assert ":math:" not in out and ":func:" not in out
    # every docstring of the package converts without a reST role left over
    import inspect
    import pathgeom
    for name in pathgeom.__all__:
        doc = inspect.getdoc(getattr(pathgeom, name)) or ""
        assert not mod._ROLE.search(mod.convert(doc)) and ":math:`" not in mod.convert(doc)

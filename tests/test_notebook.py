"""examples/teaching.ipynb runs from top to bottom in a fresh kernel and shows the lesson
(the optional [notebook] extra: nbclient, ipykernel, nbformat)."""

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_teaching_notebook_runs():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    nb = nbformat.read(ROOT / "examples" / "teaching.ipynb", as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook without outputs"
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    texts, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", out
            texts.append(out.get("text", ""))
            images += "image/png" in out.get("data", {})
    text = "".join(texts)
    assert images == 2                                   # Figure 1 and the training figure
    assert "path-sgd (kappa1)" in text                   # the invariance table
    gap = float(text.split("path_sgd_max_difference: ")[1].split()[0])
    assert gap < 1e-12
    assert "sgd_unbalanced       diverged" in text
    assert "the definition in exact rationals: [Fraction(3, 2)]" in text

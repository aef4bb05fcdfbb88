"""The public surface: explicit, documented, and free of import-time side effects."""

import inspect
import subprocess
import sys

import pathgeom


def test_every_public_name_exists_and_is_documented():
    for name in pathgeom.__all__:
        obj = getattr(pathgeom, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert inspect.getdoc(obj), f"pathgeom.{name} has no docstring"
    assert len(set(pathgeom.__all__)) == len(pathgeom.__all__)


def test_import_has_no_side_effects():
    code = ("import numpy as np, numba\n"
            "state = np.random.get_state()[1].copy(); threads = numba.get_num_threads()\n"
            "import pathgeom, pathgeom.cli, pathgeom.reference\n"
            "assert (np.random.get_state()[1] == state).all()\n"
            "assert numba.get_num_threads() == threads\n"
            "import sys; assert 'matplotlib' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)

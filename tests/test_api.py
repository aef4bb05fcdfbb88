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


def test_deprecated_names_still_work_and_say_so():
    import numpy as np
    import pytest
    net = pathgeom.rnn(1, 2, 1, T=3)
    p = net.init(np.random.default_rng(0), "uniform", scale=0.5)
    with pytest.warns(DeprecationWarning, match="n_layers"):
        assert net.depth == net.n_layers == 1
    with pytest.warns(DeprecationWarning, match="rescale_units"):
        np.testing.assert_array_equal(net.rescale(p, [np.full(2, 2.0)]),
                                      net.rescale_units(p, [np.full(2, 2.0)]))
    with pytest.warns(DeprecationWarning, match="squared_values"):
        h, delta = pathgeom.squared_network(net.graph, p)
    np.testing.assert_array_equal(h, pathgeom.squared_values(net.graph, p)[0])
    from pathgeom.train import mse_loss          # the module's old path
    from pathgeom.training import mse_loss as same
    assert mse_loss is same and callable(pathgeom.train)

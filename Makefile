# Set-up and everyday commands.  Every target creates .venv itself when it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test bench docs clean

# Installed markers: reinstall when the metadata changes.
$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

# The tests cover every shipped feature, optional extras included: install them all.
$(VENV)/.installed-test: $(VENV)/.installed Makefile
	$(PIP) install -e '.[test,plot,dask,digits,onnx,bench,notebook,docs]'
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(PIP) install -e '.[bench]' || echo "note: the optional [bench] extra did not install; comparisons that need it are skipped"
	touch $@

$(VENV)/.installed-plot: $(VENV)/.installed
	$(PIP) install -e '.[plot,dask,digits]' || echo "note: matplotlib, dask or scikit-learn did not install; the demo prints its results without the figures"
	touch $@

demo: $(VENV)/.installed-plot
	$(PY) -m pathgeom demo

test: $(VENV)/.installed-test
	$(PY) -m pytest

$(VENV)/.installed-docs: $(VENV)/.installed
	$(PIP) install -e '.[docs]'
	touch $@

# The documentation site (build/site); warnings are errors (strict: true in mkdocs.yml).
docs: $(VENV)/.installed-docs
	$(VENV)/bin/mkdocs build --strict

bench: $(VENV)/.installed-bench
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +

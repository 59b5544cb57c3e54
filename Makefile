# Two entry points (see README Quickstart): `make demo` and `make test`. Both create a venv if
# it is missing and install the package with its extras under constraints.txt (the pins that let
# mxnet 1.9.1 and gluoncv 0.10.5 coexist). `make bench` and `make study` run the other
# experiments in tools/, from this checkout (they are not in the wheel).
#
# PYTHON picks the interpreter (default python3); a non-default one gets its own venv,
# .venv-<version>, so the default .venv is untouched: `make test PYTHON=python3.12`.
PYTHON    ?= python3
# The Pythons the whole suite passed under: pyproject.toml's "Programming Language :: Python ::
# 3.X" classifiers, read with sed so that this works before any venv exists (`make supported`).
CLASSIFIER := "Programming Language :: Python :: \(3\.[0-9][0-9]*\)"
SUPPORTED := $(shell sed -n 's/^ *$(CLASSIFIER),* *$$/\1/p' pyproject.toml)
PY_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
ifeq ($(PYTHON),python3)
VENV      ?= .venv
else
VENV      ?= .venv-$(PY_VERSION)
endif
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.samplers-installed

.PHONY: setup test lint demo bench study wheel supported clean

$(STAMP): pyproject.toml setup.py constraints.txt
	$(if $(filter $(PY_VERSION),$(SUPPORTED)),,$(error samplers runs on Python $(firstword $(SUPPORTED)) to $(lastword $(SUPPORTED)) (the versions its pins are tested on), but $(PYTHON) is $(or $(PY_VERSION),not found); pick one of those: make test PYTHON=python3.11))
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@.ci/pip-install $(PY) -c constraints.txt -e '.[test,gluoncv,viz]'
	@touch $(STAMP)

setup: $(STAMP)

# The suite runs in TEST_WORKERS processes (pytest-xdist), a test file per process so that a
# file's module fixtures (trained networks, the detector study) are built once. On 2 cores it
# takes about 3 minutes instead of 5; each process holds its own MXNet and GluonCV.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

demo: setup
	$(PY) -m tools.demo

# The linter, configured in pyproject.toml ([tool.ruff]); .ci/run runs it.
lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) -m tools.bench

# The RPN study with its defaults (10 seeds x 5 arms x 500 steps; options:
# `python -m tools.study --help`).
study: setup
	$(PY) -m tools.study

# A wheel in dist/, installed into a fresh venv (.venv-wheel) that must import it.
wheel: setup
	@.ci/check-wheel $(PY) $(PYTHON)

supported:
	@echo $(SUPPORTED)

clean:
	rm -rf .venv .venv-* samplers-demo .pytest_cache .hypothesis *.egg-info build dist

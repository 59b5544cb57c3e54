# Two entry points (see README Quickstart): `make demo` and `make test`.
# Both create a venv if it is missing and install the package with its extras under
# constraints.txt (the pins that let mxnet 1.9.1 and gluoncv 0.10.5 coexist).
#
# PYTHON picks the interpreter (default python3); a non-default one gets its own venv,
# .venv-<version>, so the default .venv is untouched: `make test PYTHON=python3.12`.
PYTHON    ?= python3
# The Pythons the whole suite passed under; setup.py's python_requires says the same.
SUPPORTED := 3.8 3.9 3.10 3.11 3.12
PY_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
ifeq ($(PYTHON),python3)
VENV      ?= .venv
else
VENV      ?= .venv-$(PY_VERSION)
endif
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.samplers-installed

.PHONY: setup test demo bench wheel supported clean

$(STAMP): setup.py constraints.txt
	$(if $(filter $(PY_VERSION),$(SUPPORTED)),,$(error samplers runs on Python $(firstword $(SUPPORTED)) to $(lastword $(SUPPORTED)) (the versions its pins are tested on), but $(PYTHON) is $(or $(PY_VERSION),not found); pick one of those: make test PYTHON=python3.11))
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@.ci/pip-install $(PY) -c constraints.txt -e '.[test,gluoncv,viz]'
	@touch $(STAMP)

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(PY) -m samplers.demo

bench: setup
	$(PY) -m samplers.bench

# A wheel in dist/, installed into a fresh venv (.venv-wheel) that must import it.
wheel: setup
	@.ci/check-wheel $(PY) $(PYTHON)

supported:
	@echo $(SUPPORTED)

clean:
	rm -rf .venv .venv-* samplers-demo .pytest_cache .hypothesis *.egg-info build dist

# Two entry points (see README Quickstart): `make demo` and `make test`.
# Both create .venv if it is missing and install the package with its extras
# under constraints.txt (the pins that let mxnet 1.9.1 and gluoncv 0.10.5 coexist).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.samplers-installed

.PHONY: setup test demo bench clean

$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test,gluoncv,viz]'
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(PY) -m samplers.demo

bench: setup
	$(PY) -m samplers.bench

clean:
	rm -rf $(VENV) samplers-demo .pytest_cache .hypothesis *.egg-info

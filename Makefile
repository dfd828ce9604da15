# Set-up and the project's two commands. Only Python 3.11+ is needed on the machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo quickstart test clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch resolves to GBs of CUDA wheels.
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,video]"
	touch $(STAMP)

## The main job: procedural benchmark -> HSCNet trained on CPU -> metrics next to the prior -> timelines.
demo: $(STAMP)
	$(BIN)/higround demo --out runs/demo

## Real annotation files: data statistics of three benchmarks and a real evaluation (see README).
quickstart: $(STAMP)
	bash scripts/quickstart.sh $(BIN)

## The whole test suite: lint, types, tests.
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV)

# Two commands on a fresh machine: `make run` and `make test` (see README).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export DVC_NO_ANALYTICS := 1
# The venv's python must be the one DVC stages run with.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test venv bench clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

run: venv
	$(BIN)/dvc repro
	$(BIN)/spectraforge summary

test: venv
	$(BIN)/python -m pytest -q

# speed benchmarks (minutes); accuracy figures come from `make run && python benchmarks/accuracy.py`
bench: venv
	$(BIN)/python benchmarks/ingest.py --n-files 10000 --repeat-real 60
	$(BIN)/python benchmarks/training.py
	$(BIN)/python benchmarks/scale.py --sizes 20000,200000 --tianchi 480000

clean-venv:
	rm -rf $(VENV)

# The two commands a newcomer needs; each does its own set-up (./setup.sh, idempotent).
CORES ?= 2
CONFIG ?= config/config.yaml
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup demo test lint tiny bench

setup:
	bash setup.sh

demo: setup  ## the whole DAG on the embedded default (results/tables/)
	snakemake --cores $(CORES) --configfile $(CONFIG) --rerun-incomplete

tiny: setup  ## a smoke run of the whole DAG (a few minutes)
	snakemake --cores $(CORES) --configfile config/tiny.yaml --rerun-incomplete

bench: setup  ## the accuracy benchmark (more than 2 hours): benchmarks/results/bench/report.md
	snakemake --cores $(CORES) --configfile config/bench.yaml --rerun-incomplete
	mtpd bench collect results/bench benchmarks/results
	mtpd bench report benchmarks/results/bench

lint: setup  ## ruff, snakefmt --check and snakemake --lint (see tests/lint_workflow.py)
	ruff check mtpd tests benchmarks
	snakefmt --check workflow
	python tests/lint_workflow.py

test: setup lint  ## the linters, then the test suite
	python -m pytest -q $(PYTEST_ARGS)

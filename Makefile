# The two commands a newcomer needs; each does its own set-up (./setup.sh, idempotent).
CORES ?= 2
CONFIG ?= config/config.yaml
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup demo test tiny bench

setup:
	bash setup.sh

demo: setup  ## the whole DAG on the embedded default (results/tables/)
	snakemake --cores $(CORES) --configfile $(CONFIG) --rerun-incomplete

tiny: setup  ## a smoke run of the whole DAG (a few minutes)
	snakemake --cores $(CORES) --configfile config/tiny.yaml --rerun-incomplete

test: setup  ## the test suite
	python -m pytest -q $(PYTEST_ARGS)

# tokengap: every target sets up what it needs on a fresh machine (virtual environment, data).
SHELL := /bin/bash
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   ?= tiny
ARGS   ?=
export PYTHONUNBUFFERED := 1

.PHONY: help venv test data train-transformer train-hybrid train-recurrent train-zoo figures bench clean

help:
	@echo "make train-hybrid    train the hybrid on the embedded tiny corpus (CPU, minutes)"
	@echo "make test            run the test suite (creates .venv if missing)"
	@echo "make data DATA=small build the embedded corpus (tiny|small|large)"
	@echo "make train-zoo       train transformer, hybrid and recurrent with the same data order and seed"
	@echo "make figures         regenerate figures and the HTML report from results/"
	@echo "make bench           throughput benchmark (GPU machine)"

# The venv is (re)built when pyproject.toml changes. torch==2.13.0 is pinned: an unpinned torch pulls CUDA wheels.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

data: $(STAMP)
	$(PY) -m train.data build --mix $(DATA)

train-transformer train-hybrid train-recurrent: train-%: $(STAMP)
	$(PY) -m train.data build --mix $(DATA)
	$(PY) -m train model=$* data=$(DATA) $(ARGS)

train-zoo: $(STAMP)
	$(PY) -m train.data build --mix $(DATA)
	for m in transformer hybrid recurrent; do $(PY) -m train model=$$m data=$(DATA) $(ARGS) || exit 1; done

figures: $(STAMP)
	$(PY) -m analysis figures

bench: $(STAMP)
	$(PY) -m scripts.bench $(ARGS)

clean:
	rm -rf runs build/corpus

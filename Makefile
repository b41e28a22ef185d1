# Two commands do all set-up on a fresh machine:
#   make demo   install into .venv, then run the whole pipeline on the built-in data
#   make test   install into .venv, then run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dhm-installed
# The CPU build of torch, pinned and installed first, so pip never pulls a CUDA build.
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR ?= demo_work

.PHONY: demo test install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,inc]"
	touch $@

install: $(STAMP)

DHM := $(VENV)/bin/dhm

# Runs the stages that exist so far (about 12 minutes on 2 cores); becomes `dhm demo`,
# with caching and the bench and video stages, when the demo command lands.
demo: $(STAMP)
	$(DHM) data synth $(DEMO_DIR)/data --frames 500 --seed 0 --force
	$(DHM) train --data $(DEMO_DIR)/data -o $(DEMO_DIR)/teacher --widths mobile --steps 300 --force
	$(DHM) distill --teacher $(DEMO_DIR)/teacher/model.pt --data $(DEMO_DIR)/data -o $(DEMO_DIR)/student --student x10 --steps 400 --force
	$(DHM) quantize $(DEMO_DIR)/student/student.pt --data $(DEMO_DIR)/data -o $(DEMO_DIR)/quant --force
	$(DHM) export $(DEMO_DIR)/quant -o $(DEMO_DIR)/export --variants fp32,fp16,int8 --data $(DEMO_DIR)/data --force

test: $(STAMP)
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache

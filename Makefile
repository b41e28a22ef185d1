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

# synth -> train -> distill -> quantize -> export -> video, then the summary table
# (about 12 minutes on 2 cores; a second run reuses finished stages).
demo: $(STAMP)
	$(DHM) demo --workdir $(DEMO_DIR)

test: $(STAMP)
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache

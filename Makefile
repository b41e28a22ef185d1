# Two commands do all set-up on a fresh machine:
#   make demo   install into .venv, then run the whole pipeline on the built-in data
#   make test   install into .venv, then run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dhm-installed
# The CPU build of torch, pinned and installed first, so pip never pulls a CUDA build.
# --no-compile: Python compiles a module's bytecode when it is first imported; compiling all
# ~12,000 installed .py files up front took 57 of the install's 97 s (2026-12-03).
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR ?= demo_work

# Debian packages for the native tests (C++ core, JNI host test, GNUstep bridge), the apps'
# builds (aapt, zipalign, apksigner, dexdump, proguard for the APK; clang for the iOS bridge
# under ARC), qemu-user-static for ARM numerics (MNN's aarch64 kernels, as phones run them)
# and the aarch64 cross compiler (the core's golden tests, built as phones build it, under qemu);
# espeak-ng speaks the real sentences the voice-activity tests listen to.
NATIVE_PACKAGES := espeak-ng cmake g++ default-jdk-headless gobjc++ libgnustep-base-dev aapt android-framework-res zipalign apksigner dexdump proguard-cli clang qemu-user-static g++-aarch64-linux-gnu
NATIVE_TOOLS := espeak-ng cmake g++ javac gnustep-config aapt zipalign apksigner dexdump proguard clang++ qemu-aarch64-static aarch64-linux-gnu-g++

.PHONY: demo test test-suite install native-deps arm-env wheel-check apps clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet --no-compile -e ".[test,inc,audio]"
	touch $@

install: $(STAMP)

DHM := $(VENV)/bin/dhm

# synth -> train -> distill -> quantize -> export -> video -> bench, then the summary table
# (15 minutes from a fresh clone on a 2-core host, install included, 2026-12-03: docs/measurements.md;
# it starts from the teacher dhm ships; a second run reuses finished stages).
demo: $(STAMP)
	-@$(MAKE) --no-print-directory native-deps arm-env || echo "demo: no ARM numerics on this machine (needs apt-get): x86 figures only"
	$(DHM) demo --workdir $(DEMO_DIR)

# Installs the Debian packages only when a tool is missing (apt-get needs root or sudo).
native-deps:
	@missing=""; for t in $(NATIVE_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	[ -f /usr/share/android-framework-res/framework-res.apk ] || missing="$$missing framework-res"; \
	if [ -n "$$missing" ]; then \
	  echo "native-deps: missing$$missing; installing $(NATIVE_PACKAGES)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(NATIVE_PACKAGES); \
	fi

# An arm64 sysroot (Debian packages, downloaded and unpacked, never installed) and the
# aarch64 MNN and numpy wheels, cached in ~/.cache/dhm/arm64 (or $$DHM_ARM_ROOT): MNN
# files are then also run on MNN's aarch64 kernels under qemu-aarch64 (numerics only).
arm-env: $(STAMP) native-deps
	$(PY) -m dhm.runtime_py.engines.arm setup

# ruff first: lint (pyflakes, pycodestyle at the configured line length, bugbear) in seconds
# pytest-xdist: TEST_WORKERS processes, each taking whole test files (module fixtures such as
# the quantize run are built once) in the order tests/conftest.py gives them, longest first
# (xdist would otherwise order files by their number of tests); TEST_WORKERS=0 runs the suite
# in this process.
TEST_WORKERS ?= 2
# The wheel check (mostly pip: one core at most) runs beside the suite rather than after it.
test: $(STAMP) native-deps arm-env
	$(VENV)/bin/ruff check .
	$(MAKE) --no-print-directory -j2 test-suite wheel-check

test-suite: $(STAMP)
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The Android APK (signed, verified; no native library without an NDK) and the iOS bridge under
# clang's ARC and Swift's import rules; `make test` runs the same file with the rest.
apps: $(STAMP) native-deps
	$(VENV)/bin/pytest tests/test_apps.py

# The sdist and wheel a user installs, in a fresh venv, running the pipeline outside the checkout
wheel-check: $(STAMP)
	TORCH_SPEC="$(TORCH_SPEC)" .ci/wheel_check $(PYTHON)

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache

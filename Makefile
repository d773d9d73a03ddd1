# make run   - set up .venv if needed, then run the main job
# make test  - set up .venv if needed, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch is installed first, on its own, so you choose the build: the default pin is a known-good release
# (a CPU wheel where one lies on disk or comes from a CPU index, PyPI's default build elsewhere). Examples:
#   make TORCH_SPEC="torch==2.5.1" TORCH_INDEX=https://download.pytorch.org/whl/cu124 test
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
RUN_ARGS    ?= model=electra data=wiki

.PHONY: run test setup clean
run: $(VENV)/.installed
	$(PY) -m runner $(RUN_ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache

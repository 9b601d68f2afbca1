# Two commands do all the set-up:  `make demo` (train the default model and translate with it)
# and `make test` (the whole test suite). Both create and use the virtual environment in .venv.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rnnmt train default --model-dir models/default --overwrite
	$(BIN)/rnnmt translate -m models/default < examples/sample.en | paste examples/sample.en -

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check rnnmt tests benchmarks

clean:
	rm -rf $(VENV) models *.egg-info

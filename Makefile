# Two commands a newcomer needs (see README.md):
#   make demo   set up, then run the whole pipeline on the embedded default (conf/local.yaml)
#   make test   set up, then lint and run the default test suite
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-slow bench clean

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/recsys pipeline --conf conf/local.yaml

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

# Integration tests that start their own processes (spark-submit); slower.
test-slow: setup
	$(BIN)/pytest -m slow

bench: setup
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/train_models.py
	$(BIN)/python bench/recommend.py

clean:
	rm -rf .recsys

# Two commands a newcomer needs (see README.md):
#   make demo   set up, then run the whole pipeline on the embedded default (conf/local.yaml)
#   make test   set up, then lint and run the default test suite
VENV ?= .venv
BIN := $(VENV)/bin
# Test processes, each with its own local[2] SparkSession (docs/development.md#tests); 0 runs
# the tests in this process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

.PHONY: setup demo telco test test-slow bench clean

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/recsys pipeline --conf conf/local.yaml

# The worked example on your own data (docs/telco.md):
# IBM's public Telco sample (data/telco/) converted to the ingest files by `recsys convert
# wide`, then the same pipeline, with its state under .recsys/telco/ (conf/examples/telco.yaml).
TELCO_CSV ?= data/telco/Telco-Customer-Churn.csv
telco: setup
	$(BIN)/recsys convert wide --conf conf/examples/telco.yaml \
		--spec conf/examples/telco_wide.yaml $(TELCO_CSV)
	$(BIN)/recsys pipeline --conf conf/examples/telco.yaml

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(PYTEST)

# The slow suite (docs/development.md): end-to-end runs on a generated and trained world,
# the whole pipeline, the notebooks, and tests that start their own processes.
test-slow: setup
	$(PYTEST) -m slow

bench: setup
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/train_models.py
	$(BIN)/python bench/recommend.py
	$(BIN)/python bench/spark_als_blocks.py
	$(BIN)/python bench/bpr_scaling.py

clean:
	rm -rf .recsys

# Two commands do all set-up on a fresh machine with Python 3.11: `make demo` and `make test`.
# While editing: `make test-fast` (unit + db tiers, under a minute) and `make lint`.
# `make airflow` then serves the Airflow UI on http://localhost:8080 (same data home; Ctrl-C stops it).
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
PYTEST := $(VENV)/bin/python -m pytest

.PHONY: demo airflow test test-fast lint docs docs-serve venv clean bench

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/painting-ml demo

airflow: $(STAMP)
	$(VENV)/bin/painting-ml airflow --port $(or $(AIRFLOW_PORT),8080)

# The whole suite, every tier (what CI runs), one test module per worker process (pytest-xdist
# --dist loadfile: a module's fixtures, such as its Airflow, start once). TEST_WORKERS defaults to the
# cores, at most 4: each worker holds TensorFlow and its own test database.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$((n < 4 ? n : 4)))
test: $(STAMP)
	$(PYTEST) -q -n $(TEST_WORKERS) --dist loadfile --durations=15

# The tiers a developer runs while editing: no model training, no Airflow, no subprocesses.
test-fast: $(STAMP)
	$(PYTEST) -q -m "unit or db" -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir var/site

docs-serve: $(STAMP)
	$(VENV)/bin/mkdocs serve

clean:
	rm -rf var .pytest_cache

# Two commands do all set-up on a fresh machine with Python 3.11: `make demo` and `make test`.
# `make airflow` then serves the Airflow UI on http://localhost:8080 (same data home; Ctrl-C stops it).
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo airflow test venv clean bench

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

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf var .pytest_cache

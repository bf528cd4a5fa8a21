# Two entry points: `make demo` (the main job) and `make test`. Both build .venv first when
# pyproject.toml changed, and skip that step otherwise.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint

$(INSTALLED): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[cpu,test]'
	touch $@

demo: $(INSTALLED)
	$(VENV)/bin/radmatch demo

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# A fresh machine lacks Debian packages the tests need (chromium for the browser tests, poppler
# for the case reports). The tests spend much of their time waiting on the servers they start, so
# they run in one process per core, a test file at a time each (module-scoped servers stay shared).
test: lint
	scripts/install-test-packages
	$(VENV)/bin/pytest -n auto --dist loadfile

# Quick start: `make run` (set up + tag the bundled examples), `make test` (set up, start the local services
# the tests use if they are down, run the tests).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.skutag-installed

.PHONY: setup run test clean-venv

$(STAMP): pyproject.toml scripts/setup_env.sh
	bash scripts/setup_env.sh "$(PYTHON)" "$(VENV)"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/skutag demo

test: $(STAMP)
	bash scripts/start_services.sh
	bash scripts/run_tests.sh "$(VENV)"

clean-venv:
	rm -rf $(VENV)

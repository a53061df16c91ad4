# The project's two commands: `make run` and `make test` (plus `make bench`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench peers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# DCMTK is the reference peer of the interop tests and benchmarks; openssl makes their certificates.
peers:
	@if ! command -v storescu >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq dcmtk openssl >/dev/null; \
	fi

run: $(STAMP)
	$(PY) -m router.net echoscp 11112 -v

test: $(STAMP) peers
	$(PY) -m pytest tests

bench: $(STAMP) peers
	$(PY) -m bench.echo

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

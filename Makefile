# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# The first interpreter that runs and is 3.11 or 3.12 (pyenv shims may exist without working).
PYTHON ?= $(shell for p in python3.11 python3.12 python3; do $$p -c 'import sys; sys.exit(not (3,11) <= sys.version_info[:2] <= (3,12))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR := data/demo
DEMO_CHILDREN ?= 20000
# The demo's users are accredited for a year and sign in to `contactpoint serve` with this
# password (and a token they enrol from the QR code at their first sign-in).
DEMO_PASSWORD := demo password, not for real use
DEMO_UNTIL = $(shell $(PYTHON) -c 'import datetime as d; print(d.date.today() + d.timedelta(days=365))')
DEMO_USER_OPTIONS = --accredited-until $(DEMO_UNTIL) --password-stdin --db $(DEMO_DIR)/master.duckdb
SIZES ?= 10000,100000

.PHONY: venv demo test test-all lint bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@test -n "$(PYTHON)" || { echo 'Python 3.11 or 3.12 is required (bytewax 0.21.1 has no wheel for 3.13+); set PYTHON=/path/to/python3.12' >&2; exit 2; }
	@$(PYTHON) -c 'import sys; v=sys.version_info[:2]; sys.exit(0 if (3,11)<=v<=(3,12) else "Python 3.11 or 3.12 is required (bytewax 0.21.1 has no wheel for %d.%d); set PYTHON=..." % v)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

demo: venv
	$(BIN)/contactpoint generate --children $(DEMO_CHILDREN) --seed 1 --out $(DEMO_DIR)
	rm -f $(DEMO_DIR)/master.duckdb $(DEMO_DIR)/master.duckdb.wal
	$(BIN)/contactpoint run --feeds $(DEMO_DIR)/feeds --db $(DEMO_DIR)/master.duckdb
	echo '$(DEMO_PASSWORD)' | $(BIN)/contactpoint users add demo-admin --role admin --org DfE \
	    $(DEMO_USER_OPTIONS)
	echo '$(DEMO_PASSWORD)' | $(BIN)/contactpoint users add demo-manager --role data_manager \
	    --org Demo --by demo-admin $(DEMO_USER_OPTIONS)
	echo '$(DEMO_PASSWORD)' | $(BIN)/contactpoint users add demo-practitioner --role practitioner \
	    --org Demo --by demo-admin $(DEMO_USER_OPTIONS)
	$(BIN)/contactpoint evaluate --db $(DEMO_DIR)/master.duckdb --truth $(DEMO_DIR)/truth.csv \
	    --user demo-manager --reason "demo: accuracy against the synthetic truth"

test: venv
	$(BIN)/ruff check .
	$(BIN)/pytest -q -m "not slow"

test-all: venv
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check .

$(VENV)/.bench-installed: requirements-bench.lock $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.lock
	@touch $@

bench: venv $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks --sizes $(SIZES)

clean:
	rm -rf $(VENV) data

# logwarden: two entry points on a fresh Debian machine.
#   make demo   create .venv, install, scan the bundled samples with the built-in rules
#   make test   create .venv with dev extras, install the Debian packages the tests need
#               (when run as root), run the whole suite
#   make notebooks  execute notebooks/*.ipynb in place on the samples (they are committed
#               executed; the tests fail when their outputs are stale)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the tests drive for real: rsyslogd and logger write real log files,
# logrotate rotates them, systemd-journal-remote writes journal files (journalctl comes with
# systemd). libsystemd-dev, pkg-config, gcc and python3-dev build python-systemd, the
# optional `journal` extra that reads the journal in-process. chromium renders the HTML
# report in its test. apache2 writes a real error log (rewrite loop, MaxRequestWorkers, a
# crashed child) for the Apache rules. tmux is the terminal the screen tests run `scan` in.
# fail2ban gives its filters, jails and annotated sample logs to the acceptance test of the
# fail2ban import; logcheck and logcheck-database: `scan --logcheck` is compared with the
# real logcheck on the real rules.
APT_PACKAGES := rsyslog logrotate bsdutils util-linux systemd systemd-journal-remote fail2ban \
	libsystemd-dev pkg-config gcc python3-dev chromium apache2 tmux logcheck logcheck-database
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck bench apt-deps clean notebooks

$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv; \
	  else echo "python3-venv is missing: apt-get install python3-venv" >&2; exit 1; fi; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python apt-deps
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q -e '.[dev,journal]' || echo "python-systemd did not build" \
	  "(needs libsystemd-dev pkg-config gcc python3-dev): the journal is read with journalctl" >&2
	@touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/logwarden scan samples/

apt-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "not root: tests needing$$missing will skip (or fail under CI=true)" >&2; fi; \
	fi

test: $(VENV)/.installed-dev apt-deps
	$(BIN)/python -m pytest -n 2 -q $(PYTEST_ARGS)
	$(BIN)/ruff check pipeline
	$(BIN)/mypy pipeline

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/ruff format --check pipeline tests bench
	$(BIN)/mypy pipeline

notebooks: $(VENV)/.installed-dev
	$(BIN)/python notebooks/execute.py

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

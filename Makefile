# Two commands do all the set-up on a fresh machine (Python 3.11, Node 20, Java 17):
#   make demo   - virtualenv, install, run the main job on the embedded DynamoDB Local
#   make test   - install everything the tests need (incl. local servers) and run the suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
NODE_SERVERS := servers/node_modules/.installed

.PHONY: demo test bench lint clean servers install install-test browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	$(BIN)/python -m compileall -q src  # bytecode, as pip writes it for an installed package
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -m compileall -q src
	touch $@ $(VENV)/.installed

$(NODE_SERVERS): servers/package.json servers/package-lock.json
	cd servers && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The dashboard's browser test drives Debian's headless Chromium (never a downloaded one).
# Installed where we can (root, apt-get); quiet and idempotent; never fails the build: without
# it the test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u 2>/dev/null)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
	       >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
	       apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; }; }; } \
	  || echo "note: no chromium here: the dashboard's browser test will be skipped"

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
servers: $(NODE_SERVERS)

demo: $(VENV)/.installed $(NODE_SERVERS)
	rm -rf demo-repo
	$(BIN)/hippolyte demo --dir demo-repo

test: $(VENV)/.installed-test $(NODE_SERVERS) browser
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-test $(NODE_SERVERS)
	$(BIN)/python bench/run.py

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) servers/node_modules demo-repo bench/.venv-* .pytest_cache .hypothesis

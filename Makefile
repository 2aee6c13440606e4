# colonynode: two commands on a fresh machine.
#   make test   sets everything up, then runs ruff, mypy and pytest
#   make demo   sets everything up, then runs a real multi-node colony on loopback
#   make chaos  a chaos run against real daemons (SEED=N DURATION=S to choose)
#   make fuzz   the decoders and cores under a long fuzz budget (FUZZ_EXAMPLES=N)
# A second run reuses .venv and installs nothing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PKGS   := core storage gossip dht consensus node cli simulations sdk
PYTEST_ARGS ?=
SEED ?=
DURATION ?= 300

.PHONY: test demo chaos fuzz lint typecheck pytest bench clean setup

setup: $(STAMP)

# Debian packages, installed only when absent (neither a command of that name nor an
# installed package): $(call apt_missing,PACKAGES).
define apt_missing
	@missing=""; \
	for p in $(1); do \
	  { command -v $$p || dpkg -s $$p; } >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
endef

# System packages py-libp2p needs to build fastecdsa.
$(VENV)/.sysdeps:
	$(call apt_missing,gcc libgmp-dev python3-dev)
	@[ -d $(VENV) ] || $(PYTHON) -m venv $(VENV)
	@touch $@

$(STAMP): pyproject.toml $(VENV)/.sysdeps
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

# mypy cannot follow setuptools' editable import hook: give it a link tree.
.typecheck/colonynode/.links: Makefile
	@mkdir -p .typecheck/colonynode
	@for p in $(PKGS); do ln -sfn ../../$$p .typecheck/colonynode/$$p; done
	@touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) .typecheck/colonynode/.links
	MYPYPATH=.typecheck $(BIN)/mypy -p colonynode

pytest: $(STAMP) $(VENV)/.browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# A real browser for the dashboard's test (tests/integration/test_dashboard.py): Debian's
# chromium and its driver (a browser download of its own cannot work on machines that
# reach only the package registries).
$(VENV)/.browser: $(VENV)/.sysdeps
	$(call apt_missing,chromium chromium-driver)
	@touch $@

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# Root and `ip` give each daemon a network namespace (link cuts, slow links); without
# them the run says so and injects kills and pauses only.
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos --duration-s $(DURATION) $(if $(SEED),--seed $(SEED))

# The fuzz tests with a long budget (make test runs them with COLONYNODE_FUZZ_EXAMPLES=150).
FUZZ_EXAMPLES ?= 5000
fuzz: $(STAMP)
	COLONYNODE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/fuzz -p no:logging

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .typecheck .pytest_cache .mypy_cache .ruff_cache build *.egg-info

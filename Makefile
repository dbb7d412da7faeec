# Two commands on a fresh machine: `make run` (main job on the embedded toy world) and `make test`.
# Each creates .venv if missing and installs the CPU torch wheel first, so no CUDA build is pulled.
# Every install takes its versions from constraints.txt (the lock; `make lock` refreshes it, docs/installing.md):
# the stamp hashes it with pyproject.toml, so a change to either reinstalls.
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK := constraints.txt
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | sha1sum | cut -c1-12)
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?=

.PHONY: run test install lock bench clean

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c $(LOCK) --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) torch
	$(PY) -m pip install -q -c $(LOCK) -e '.[dev,deepspeed]'
	rm -f $(VENV)/.installed-* && touch $@

# Resolve pyproject's ranges afresh in a throwaway venv (nothing else installed) and pin what came in.
# A local label (+cpu) is dropped, so the same pin takes the CUDA wheel in the image. Review the diff, then
# `make install` picks it up (the stamp changes).
lock:
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	python3 -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install -q --upgrade pip; \
	"$$tmp/venv/bin/python" -m pip install -q torch==$(TORCH_VERSION); \
	"$$tmp/venv/bin/python" -m pip install -q -e '.[dev,deepspeed]'; \
	"$$tmp/venv/bin/python" -m pip freeze --exclude-editable > "$$tmp/freeze.txt"; \
	{ echo "# The lock: exact versions of every package the project installs (pyproject's dependencies and its"; \
	  echo "# dev and deepspeed extras, with all they pull in), resolved on Python $$("$$tmp/venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])'). make install/run/test, CI and"; \
	  echo "# docker/Dockerfile install with -c $(LOCK). Written by \`make lock\` (docs/installing.md), not by hand."; \
	  sed -E 's/^([A-Za-z0-9._-]+==[^+]+)\+.*$$/\1/' "$$tmp/freeze.txt"; \
	} > "$$tmp/lock.txt"; \
	mv "$$tmp/lock.txt" $(LOCK); \
	echo "$(LOCK): $$(grep -c '==' $(LOCK)) pins"

run: $(STAMP)
	$(VENV)/bin/erase run configs/campaigns/toy.yaml

test: $(STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benches/toyworld.py

clean:
	rm -rf runs bench-results .pytest_cache

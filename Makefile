# actionlab — the two commands of the README's quick start:
#
#   make demo    install the package alone (no test or docs extras), then train a small TwoLayer on
#                the bundled digits (runs/demo/)
#   make test    install with the test and docs extras, then run the whole test suite
#
# PYTHON may be overridden, e.g. `make test PYTHON=.venv/bin/python`.

PYTHON ?= python3
PIP    := $(PYTHON) -m pip
# torch first, pinned: on the project's machines `pip install torch==2.13.0` picks up a local
# CPU wheel; letting `pip install -e .` resolve torch>=2.3 itself could pull a multi-GB CUDA build.
TORCH_VERSION ?= 2.13.0

.PHONY: help check-python install install-demo demo test install-browser docs clean

help:
	@echo "make demo     pip install -e . (no extras) and run 'actionlab demo --out runs/demo'"
	@echo "make test     make install, then run 'python -m pytest -q'"
	@echo "make install  pip install torch==$(TORCH_VERSION), then pip install -e '.[test,docs]'"
	@echo "make docs     build the user guide and API reference into site/ (mkdocs build --strict)"

check-python:
	@$(PYTHON) -c "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 'actionlab needs Python >= 3.11, this is ' + sys.version.split()[0])"

# the demo needs the package and its runtime dependencies only
install-demo: check-python
	$(PIP) install "torch==$(TORCH_VERSION)"
	$(PIP) install -e .

install: check-python
	$(PIP) install "torch==$(TORCH_VERSION)"
	$(PIP) install -e ".[test,docs]"

demo: install-demo
	$(PYTHON) -m actionlab demo --out runs/demo

# --- the report's browser test and the documentation (report developer) --------------------
# `install-browser`: what tests/test_report_browser.py needs — a system Chromium and the
# playwright package (which drives it through `executable_path`; `playwright install` and its
# browser download are never used). Debian's `chromium` is installed with apt-get only on CI
# (CI set) as root or with password-less sudo; elsewhere it prints how, and the browser test is
# skipped with that message. Never fails `make test`.
CHROMIUM_PKG ?= chromium
install-browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
	  echo "install-browser: $$(command -v chromium || command -v chromium-browser) is installed"; \
	elif [ -n "$$CI" ] && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "install-browser: apt-get install $(CHROMIUM_PKG)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CHROMIUM_PKG) >/dev/null) \
	    || echo "install-browser: apt-get failed; the browser test will be skipped"; \
	elif [ -n "$$CI" ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	  echo "install-browser: sudo apt-get install $(CHROMIUM_PKG)"; \
	  (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CHROMIUM_PKG) >/dev/null) \
	    || echo "install-browser: apt-get failed; the browser test will be skipped"; \
	else \
	  echo "install-browser: no chromium found; install it (Debian/Ubuntu: sudo apt-get install chromium) or set"; \
	  echo "  ACTIONLAB_CHROMIUM=/path/to/chrome — until then tests/test_report_browser.py is skipped"; \
	fi
	@$(PIP) install -q "playwright>=1.40" || echo "install-browser: pip install playwright failed; the browser test will be skipped"

# `docs`: the user guide and the API reference (mkdocs + mkdocstrings); any warning fails.
.PHONY: docs
docs:
	$(PIP) install -q "mkdocs>=1.6" "mkdocstrings[python]>=0.26"
	$(PYTHON) -m mkdocs build --strict
# --------------------------------------------------------------------------------------------

test: install install-browser
	$(PYTHON) -m pytest -q

clean:
	rm -rf build dist site src/*.egg-info .pytest_cache

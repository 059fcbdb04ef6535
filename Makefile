# visret: `make demo` runs the main jobs (retrieval, then handcrafted vs CNN classification) on a small
# real dataset; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := build/demo

.PHONY: demo test docs setup setup-dev chromium benchmarks clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The stamps are rebuilt whenever a pyproject changes. An editable install leaves compiling visret to its first
# run, which PYTHONDONTWRITEBYTECODE forbids: every command would compile its modules again (~0.1 s), so compile
# them now, as pip does for a wheel.
$(VENV)/.setup: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[serve]'
	$(BIN)/python -m compileall -q visret plugins >/dev/null
	touch $@

$(VENV)/.setup-dev: pyproject.toml tests/plugin_example/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,serve,ray]' -e tests/plugin_example
	$(BIN)/python -m compileall -q visret plugins >/dev/null
	touch $(VENV)/.setup $@

# The browser tests drive the system Chromium (Playwright cannot download its own here): install
# Debian's package when it is missing and we may; otherwise those tests say why they skip.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium is not installed and cannot be installed here: the browser tests will skip"; fi; }

setup: $(VENV)/.setup
setup-dev: $(VENV)/.setup-dev

demo: $(VENV)/.setup
	rm -rf $(DEMO)
	$(BIN)/python -m visret.sample_data $(DEMO)/digits
	$(BIN)/visret index $(DEMO)/digits/train --extractor hog --param size=32 --param pixels_per_cell=4 --index $(DEMO)/index
	$(BIN)/visret info --index $(DEMO)/index
	$(BIN)/visret query $(DEMO)/digits/test/3/$$(ls $(DEMO)/digits/test/3 | head -n 1) \
		$(DEMO)/digits/test/8/$$(ls $(DEMO)/digits/test/8 | head -n 1) --index $(DEMO)/index -k 5
	$(BIN)/visret evaluate $(DEMO)/digits/test --index $(DEMO)/index -k 5
	$(BIN)/visret compare $(DEMO)/digits --pipelines "hog(size=32,pixels_per_cell=4)+linear-svm,keras/squeezenet(size=64)+logistic,cnn/lenet5" \
		--epochs 30 --augment translate=0.1,rotate=0.05 --save-dir $(DEMO)/models --html $(DEMO)/pipelines.html
	$(BIN)/visret classify $$(for d in $(DEMO)/digits/test/*/; do ls $$d* | head -n 2; done) \
		--model $(DEMO)/models/cnn-lenet5.keras --montage $(DEMO)/predictions.png --explain
	@echo "browse and search the index in a web browser: $(BIN)/visret serve --index $(DEMO)/index"

# One pytest worker per core (pytest-xdist), each test file kept in one worker for its fixtures.
test: $(VENV)/.setup-dev chromium
	$(BIN)/python -m pytest -n auto --dist loadfile

docs: $(VENV)/.setup-dev
	$(BIN)/python -m mkdocs build --strict

benchmarks: $(VENV)/.setup
	$(BIN)/python benchmarks/spine.py
	$(BIN)/python benchmarks/extraction_speed.py
	$(BIN)/python benchmarks/cnn.py --limit-large 1440
	$(BIN)/python benchmarks/handcrafted.py

clean:
	rm -rf build $(VENV)

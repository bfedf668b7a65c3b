# Every target named in the README. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
SAM_VENV  := .venv-sam
PY        := $(VENV)/bin/python
SAM       := $(SAM_VENV)/bin/sam
SAM_CLI_VERSION := 1.170.0
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
BUILD_DIR := .aws-sam/build
REGION    ?= us-east-1
DATA_DIR  ?= .local-stack/pinecone-data
AWS_PORT  ?= 4566
PINECONE_PORT ?= 5080

export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= $(REGION)

# The Lambda runtime's interpreter; found once, or make stops with what to install.
PYTHON313 = $(shell tools/find-python.sh)

.PHONY: bench bench-plot help venv test test-repeat lint format typecheck validate security build schema clean demo up down invoke status rotate

help:
	@echo "make demo      the whole product on this machine: local stack from template.yaml, a dataset in, queries out, checked"
	@echo "make up        the local stack in the foreground until Ctrl-C or make down (DATA_DIR=$(DATA_DIR) keeps its data)"
	@echo "               TRACING=1 (make up or make demo) deploys with Tracing=true and collects the X-Ray traces"
	@echo "               in .local-stack/traces.jsonl (make status shows the last ones; python -m relay_local traces)"
	@echo "make down      stop the running make up of this checkout (by its recorded process ids)"
	@echo "make invoke    one event through one function under awslambdaric: make invoke FN=ingest EVENT=events/ingest-upsert.json"
	@echo "make status    queue depths, DLQ messages with their reasons, index stats, emulator counters of a running make up,"
	@echo "               and its last traces as trees when it traces (TRACING=1)"
	@echo "make rotate    one rotation of the running make up's Pinecone key through RotateKeyFunction (4 steps, awslambdaric);"
	@echo "               TOKEN=<version> runs the steps again for a rotation that stopped part-way"
	@echo "make test      lint, types, template checks, sam build, the whole pytest suite on every core (what CI runs)"
	@echo "make test-repeat N=20 BURN=1  integration + reliability tests N times (BURN CPU burners alongside), failures by test id;"
	@echo "               SCOPE=all runs the whole suite (e.g. make test-repeat N=5 BURN=2 SCOPE=all)"
	@echo "               WORKERS=4 runs each repetition in four workers, as make test does on two cores"
	@echo "make lint      ruff check + ruff format --check"
	@echo "make format    ruff format + ruff check --fix"
	@echo "make typecheck mypy --strict on shared/, cli/ and functions/"
	@echo "make validate  sam validate, sam validate --lint, cfn-lint on the translated template"
	@echo "make security  bandit on the code, checkov on the translated template (accepted findings: tools/security_suppressions.toml)"
	@echo "make build     sam build (no container) into $(BUILD_DIR), the unused botocore models dropped, then bytecode"
	@echo "make bench     every benchmark in bench/ (minutes; not part of make test), JSON in bench/results/, then bench-plot"
	@echo "make bench-plot docs/performance.png from bench/results/ingest_throughput.json"
	@echo "make schema    regenerate docs/contract.schema.json from the contract models"
	@echo "make clean     remove the venvs and build output"

# Setup shows its steps: tools/step.sh names each one and its time, and pip prints its own progress.
PIP_FLAGS := --disable-pip-version-check --progress-bar on
STEP      := tools/step.sh

$(VENV)/.installed: pyproject.toml
	@py=$$(tools/find-python.sh) || exit 1; \
	  [ -x $(PY) ] || $(STEP) "$(VENV): new virtual environment ($$py)" $$py -m venv $(VENV)
	@$(STEP) "$(VENV): pip itself" $(PY) -m pip install $(PIP_FLAGS) --quiet --upgrade pip
	@$(PY) tools/pinned_requirements.py cli dev > $(VENV)/requirements.txt
	@$(STEP) "$(VENV): the project's pinned dependencies ($$(grep -c . $(VENV)/requirements.txt) pins, pyproject.toml)" \
	  $(PY) -m pip install $(PIP_FLAGS) -r $(VENV)/requirements.txt
	@# The project itself, editable and without re-resolving its pins: puts the vector-relay command in $(VENV)/bin.
	@$(STEP) "$(VENV): the project, editable (the vector-relay command)" \
	  $(PY) -m pip install $(PIP_FLAGS) --quiet --no-deps --editable .
	@# The venv's interpreter sees the handlers, the first-party layer package (as Lambda's /opt/python would) and local/.
	@echo "$(CURDIR)" > $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/vector_relay_paths.pth
	@echo "$(CURDIR)/shared" >> $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/vector_relay_paths.pth
	@echo "$(CURDIR)/cli" >> $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/vector_relay_paths.pth
	@echo "$(CURDIR)/local" >> $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/vector_relay_paths.pth
	@touch $@

# SAM CLI pins its own boto3 and pydantic, so it lives in its own venv (with cfn-lint and samtranslator).
$(SAM_VENV)/.installed:
	@py=$$(tools/find-python.sh) || exit 1; \
	  [ -x $(SAM) ] || $(STEP) "$(SAM_VENV): new virtual environment ($$py)" $$py -m venv $(SAM_VENV)
	@$(STEP) "$(SAM_VENV): pip itself" $(SAM_VENV)/bin/python -m pip install $(PIP_FLAGS) --quiet --upgrade pip
	@$(STEP) "$(SAM_VENV): aws-sam-cli $(SAM_CLI_VERSION) (sam validate, sam build, cfn-lint)" \
	  $(SAM_VENV)/bin/python -m pip install $(PIP_FLAGS) aws-sam-cli==$(SAM_CLI_VERSION)
	@touch $@

# checkov pins its own boto3 and pydantic too.
$(CHECKOV_VENV)/.installed:
	@py=$$(tools/find-python.sh) || exit 1; \
	  [ -x $(CHECKOV_VENV)/bin/checkov ] || $(STEP) "$(CHECKOV_VENV): new virtual environment ($$py)" $$py -m venv $(CHECKOV_VENV)
	@$(STEP) "$(CHECKOV_VENV): checkov $(CHECKOV_VERSION) (template security checks)" \
	  $(CHECKOV_VENV)/bin/python -m pip install $(PIP_FLAGS) checkov==$(CHECKOV_VERSION)
	@touch $@

venv: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy shared/vector_relay cli/vector_relay_cli functions

validate: $(VENV)/.installed $(SAM_VENV)/.installed
	$(SAM) validate --template template.yaml --region $(REGION)
	$(SAM) validate --lint --template template.yaml --region $(REGION)
	@mkdir -p .aws-sam
	$(SAM_VENV)/bin/python tools/sam_to_cfn.py template.yaml .aws-sam/translated.json
	$(SAM_VENV)/bin/cfn-lint .aws-sam/translated.json
	$(PY) -m tools.template_rules template.yaml
	$(PY) -m tools.template_rules .aws-sam/translated.json
	@# A tenant's own queues (plain CloudFormation, deployed once per tenant).
	$(SAM_VENV)/bin/cfn-lint templates/tenant.yaml
	$(PY) -m tools.template_rules templates/tenant.yaml

# sam's pip builder needs the runtime's interpreter first on PATH.
build: $(SAM_VENV)/.installed
	@py=$$(tools/find-python.sh) || exit 1; \
	  PATH="$$(dirname $$py):$$PATH" $(SAM) build --template template.yaml --build-dir $(BUILD_DIR) --cached && \
	  $$py tools/prune_botocore.py $(BUILD_DIR) && \
	  $$py tools/precompile.py $(BUILD_DIR)

schema: $(VENV)/.installed
	$(PY) -m vector_relay.contract.json_schema > docs/contract.schema.json

# bandit on the code, checkov on the translated template; accepted findings: tools/security_suppressions.toml.
# The figures docs/security.md quotes are written there by this run (never typed by hand).
security: validate $(CHECKOV_VENV)/.installed
	$(PY) -m tools.security_checks --bandit $(VENV)/bin/bandit --checkov $(CHECKOV_VENV)/bin/checkov \
	  --figures docs/security.md .aws-sam/translated.json templates/tenant.yaml

# The suite runs in two worker processes per core (pytest-xdist): each has its own moto server and emulator on
# ports the OS picks, and every test's state lives in its own tmp_path. Many tests mostly wait (the local stack's
# subprocesses, the chaos run's timers): with one worker per core the suite kept two cores 43% busy and took
# 8m15s, with two per core 5m28s for the same CPU (2026-12-07). PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= $(shell echo $$(( $$(nproc) * 2 )))
test: lint typecheck validate security build
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS)

# Flaky-test hunt (tools/repeat_tests.py): N fresh pytest runs, optionally with BURN busy cores;
# SCOPE=integration (tests/integration + tests/reliability) or SCOPE=all (the whole suite).
N     ?= 20
BURN  ?= 0
SCOPE ?= integration
# WORKERS=4 runs each repetition in four workers, as make test does on two cores (default: one process).
WORKERS ?= 0
test-repeat: $(VENV)/.installed build
	$(PY) -m tools.repeat_tests --runs $(N) --burn $(BURN) --scope $(SCOPE) --numprocesses=$(WORKERS)

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .aws-sam .mypy_cache .ruff_cache .pytest_cache .test-repeat

# The local stack (local/relay_local, docs/local-stack.md): moto's server + the Pinecone emulator + pollers.
# Benchmarks (not part of make test): each prints its ratios and writes bench/results/<name>.json.
$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(PY) tools/pinned_requirements.py bench > $(VENV)/bench-requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r $(VENV)/bench-requirements.txt
	@touch $@

BENCHMARKS := contract_validation ingest_throughput cold_start query_overhead version_guard_cost guard_latency guard_write_shapes load_throughput

bench: $(VENV)/.bench-installed build
	@for name in $(BENCHMARKS); do echo "== bench/$$name.py"; $(PY) bench/$$name.py --json || exit 1; done
	$(MAKE) --no-print-directory bench-plot

bench-plot: $(VENV)/.bench-installed
	$(PY) bench/plot.py

demo: $(VENV)/.installed
	$(PY) -m relay_local demo

up: $(VENV)/.installed
	$(PY) -m relay_local up --aws-port $(AWS_PORT) --pinecone-port $(PINECONE_PORT) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

down: $(VENV)/.installed
	$(PY) -m relay_local down

invoke: $(VENV)/.installed
	@[ -n "$(FN)" ] && [ -n "$(EVENT)" ] || { echo "usage: make invoke FN=ingest|query|receipts|reconcile|rotate_key EVENT=events/<file>.json"; exit 2; }
	$(PY) -m relay_local invoke $(FN) $(EVENT)

status: $(VENV)/.installed
	$(PY) -m relay_local status

rotate: $(VENV)/.installed
	$(PY) -m relay_local rotate $(if $(TOKEN),--token $(TOKEN))

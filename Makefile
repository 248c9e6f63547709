# The two commands a fresh machine needs are `make up` and `make test`; each sets up what it uses.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)/e2e
KUBECONFIG_PATH = $${CARDPOOL_CLUSTER_DIR:-$(CURDIR)/.cluster}/kubeconfig
KUBECTL = $$(bash e2e/cluster/build-binaries.sh)/kubectl --kubeconfig $(KUBECONFIG_PATH)
OPERATOR_HEALTH := http://127.0.0.1:16480/healthz
CRD_FILES := $(wildcard crds/cardpool.io_*.yaml)

.PHONY: up down test unit e2e chaos bench kubeconfig bindir binaries deps venv lint operator lock crds image release

## up: local cluster + small heterogeneous fleet + CRDs + the operator, all running in the background
up: deps venv binaries
	$(PY) -m localkube up --fleet e2e/fleets/small.yaml
	$(KUBECTL) apply --server-side -k crds/
	$(KUBECTL) wait --for condition=established --timeout=60s $(addprefix -f ,$(CRD_FILES))
	$(KUBECTL) apply --server-side -k manifests/admission/
	$(MAKE) --no-print-directory operator
	@# the demo: a mixed-vendor pool and three jobs; two run, the mixed one waits for cards. KWOK runs no
	@# container: localkube.simtrainer reports progress for the demo jobs' rank 0, as a trainer does
	$(PY) -m localkube start demo-trainers -- $(PY) -m localkube.simtrainer --kubeconfig $(KUBECONFIG_PATH) \
	  --namespace demo
	$(KUBECTL) apply --server-side -f manifests/examples/pool-mixed-vendor.yaml
	$(KUBECTL) create namespace demo --dry-run=client -o yaml | $(KUBECTL) apply -f -
	$(KUBECTL) apply --server-side -n demo -f manifests/examples/job-pytorch-homogeneous.yaml \
	  -f manifests/examples/job-mindspore-elastic-ascend.yaml -f manifests/examples/job-mixed-families.yaml
	$(KUBECTL) wait -n demo --for=jsonpath='{.status.phase}'=Running --timeout=90s \
	  trainingjob/llama-sft trainingjob/pangu-pretrain
	$(KUBECTL) get cardpools,trainingjobs -A
	@echo "ready: PATH=\$$(make -s bindir):\$$PATH KUBECONFIG=\$$(make -s kubeconfig) kubectl get tj -A"

## operator: (re)start the operator against the local cluster; its log is .cluster/logs/operator.log
operator: venv
	KUBECONFIG=$(KUBECONFIG_PATH) CARDPOOL_METRICS_PORT=16490 $(PY) -m localkube start operator \
	  --ready-url $(OPERATOR_HEALTH) -- \
	  $(VENV)/bin/kopf run --standalone --all-namespaces --liveness=$(OPERATOR_HEALTH) -m cardpool.handlers

## down: stop every process `make up` (or the tests) started
down: venv
	$(PY) -m localkube down

## test: unit tests and e2e tests (the e2e fixture starts the local cluster when it is not up)
test: deps venv binaries
	$(PY) -m pytest

unit: venv
	$(PY) -m pytest tests

## chaos: every scenario of e2e/test_chaos.py (`make test` runs one of them); the last line is their figures
chaos: deps venv binaries
	CARDPOOL_CHAOS=all CARDPOOL_CHAOS_REPORT=$(CURDIR)/chaos-report.json $(PY) -m pytest e2e/test_chaos.py
	@$(PY) -c 'import json; print(json.dumps(json.load(open("chaos-report.json"))))'

e2e: deps venv binaries
	$(PY) -m pytest e2e

## bench: benchmarks; each prints JSON as its last line. The cluster ones (e2e/clusterbench) start private
## clusters; `scale` (1,250 nodes, ~30,000 pods) takes the longest: `$(PY) -m clusterbench scale --quick` tries it
bench: deps venv binaries
	$(PY) -m cardpool.bench planner
	$(PY) -m cardpool.bench pass
	$(PY) -m cardpool.bench goodput
	$(PY) -m clusterbench start
	$(PY) -m clusterbench recovery
	$(PY) -m cardpool.bench defrag
	$(PY) -m cardpool.bench quota
	$(PY) -m clusterbench scale
	$(PY) -m localkube bench

## image: the operator image, built without any registry from Debian's packages and the pinned wheels
## (image/build.sh, cached by its inputs); prints its name, OCI archive, size and digest
image: deps venv
	@bash image/build.sh

## release: dist/manifests.yaml (the kustomize install in one file, for kubectl apply --server-side -f),
## dist/prometheus.yaml (ServiceMonitor and alerts) and the Grafana dashboard (release/build.py);
## IMAGE=REGISTRY/NAME:TAG sets the operator's image
release: deps venv binaries
	$(PY) release/build.py --kubectl $$(bash e2e/cluster/build-binaries.sh)/kubectl --out dist \
	  $(if $(IMAGE),--image $(IMAGE))

kubeconfig:
	@echo $(KUBECONFIG_PATH)

bindir: deps
	@bash e2e/cluster/build-binaries.sh

binaries: deps
	@bash e2e/cluster/build-binaries.sh >/dev/null

deps:
	@bash e2e/cluster/install-deps.sh

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -c constraints.txt pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

## crds: regenerate crds/, manifests/admission/ and docs/api.md from the models in cardpool.api, and the Helm
## chart's copies of them and of manifests/ (charts/cardpool/files/)
crds: venv
	$(PY) -m cardpool.api.crdgen

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m cardpool.api.crdgen --check

## lock: re-resolve the newest versions into constraints.txt (then run make test and commit both)
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip setuptools
	.lock-venv/bin/pip install -q '.[dev]'
	{ echo "# Exact versions of every Python package cardpool installs (pip -c). Regenerate with: make lock"; \
	  .lock-venv/bin/pip freeze --all | grep -v '^cardpool' ; } > constraints.txt
	rm -rf .lock-venv

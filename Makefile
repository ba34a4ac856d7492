# salve — every entry point a developer or CI uses. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export CARGO_TERM_COLOR ?= never
CARGO ?= cargo

.PHONY: help
help: ## List targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# ------------------------------------------------------------------ the two commands of the README
.PHONY: test
test: deps lint test-rust test-ansible ## Everything CI runs: lints, unit + integration tests on a real control plane, Ansible tests
	@echo "make test: all passed"

.PHONY: demo
demo: deps build ## Start the local control plane and walk an alert through salve
	tests/demo.sh

# ------------------------------------------------------------------ pieces
.PHONY: deps
deps: ## Install missing system packages (apt) — only what is absent
	tests/setup-deps.sh

.PHONY: build
build: ## Build the salve binary (release)
	$(CARGO) build --release -p salve

.PHONY: generate
generate: ## Regenerate crds/ (and the chart's copy) from the Rust types
	$(CARGO) run -q -p salve -- crd --out-dir crds
	@if [ -d charts/salve ]; then mkdir -p charts/salve/crds && cp crds/*.yaml charts/salve/crds/; fi

.PHONY: lint
lint: build-helm ## cargo fmt --check, clippy -D warnings, helm lint --strict + helm template of charts/salve
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@helm=$$(tests/tools/build-helm.sh | tail -n 1) && set -e && \
	  for v in "" charts/salve/ci/namespaced-values.yaml charts/salve/ci/full-values.yaml; do \
	    echo "helm lint --strict charts/salve $${v:+-f $$v}"; \
	    $$helm lint --strict charts/salve $${v:+-f $$v} >/dev/null; \
	    $$helm template salve charts/salve --namespace salve $${v:+-f $$v} >/dev/null; \
	  done

.PHONY: build-helm
build-helm: ## Build helm from Go modules (cached by version, tests/cluster/versions.env)
	tests/tools/build-helm.sh >/dev/null

.PHONY: test-rust
test-rust: build-cluster ## Unit tests and integration tests, with a fresh control plane started and stopped around them
	tests/with-cluster.sh $(CARGO) test --workspace --no-fail-fast

.PHONY: build-cluster
build-cluster: ## Build the control-plane binaries from Go modules (cached by version)
	tests/cluster/build.sh >/dev/null

.PHONY: cluster-up
cluster-up: ## Start etcd, kube-apiserver, controller-manager, scheduler and kwok on loopback
	tests/cluster/up.sh
	@echo "export KUBECONFIG=$(CURDIR)/.cluster/kubeconfig   # kubectl: $$(grep SALVE_KUBECTL .cluster/env | cut -d= -f2)"

.PHONY: cluster-down
cluster-down: ## Stop the local control plane (no process left behind)
	tests/cluster/down.sh

.PHONY: cluster-status
cluster-status: ## Show each control-plane component, with the log of any that crashed
	tests/cluster/status.sh

.PHONY: bench-decide
bench-decide: ## Decision engine: prompt tokens for 10/50/200-entry catalogs, rules-path decide p50/p99
	$(CARGO) bench -p salve-decide --bench decide

# ------------------------------------------------------------------ webhook shim
.PHONY: bench-webhook
bench-webhook: deps build-cluster ## Webhook shim: alerts/s, p50/p99 and RSS of the release binary on a fresh local control plane
	$(CARGO) build --release -p salve
	tests/with-cluster.sh $(CARGO) bench -p salve-tests --bench webhook

# ------------------------------------------------------------------ operator
.PHONY: bench-controller
bench-controller: deps build-cluster ## Operator: incident→Job p50/p99 (trickle, burst of 1,000), API writes per resolved incident, RSS idle and with 10,000 incidents
	$(CARGO) build --release -p salve
	tests/with-cluster.sh $(CARGO) bench -p salve-tests --bench controller

# ------------------------------------------------------------------ playbooks and runner image
.PHONY: test-ansible
test-ansible: ## Run the playbooks with real Ansible (lint, catalog schemas, real runs through salve-run)
	tests/ansible/run.sh

.PHONY: lint-ansible
lint-ansible: ## Lint playbooks (syntax-check, ansible-lint production), Dockerfiles (hadolint) and scripts (shellcheck)
	SALVE_ANSIBLE_CLUSTER=0 tests/ansible/run.sh -q test_static.py

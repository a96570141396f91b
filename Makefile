# gitk8s — build, demo and tests. Every tool the tests need is built here.

GO        ?= go
CACHE     := $(CURDIR)/.cache
BIN       := $(CACHE)/bin
STAGES    := $(CACHE)/kwok-stages.yaml
DEMO_DIR  := $(CACHE)/demo
CLUSTERS  ?= 1
KWOK_VERSION := v0.8.0
HELM_VERSION := $(shell sed -n "s|^[[:space:]]*helm.sh/helm/v4 \(v[^ ]*\).*|\1|p" go.mod)
COSIGN_VERSION := v2.6.5
SOPS_VERSION := $(shell sed -n "s|^[[:space:]]*github.com/getsops/sops/v3 \(v[^ ]*\).*|\1|p" go.mod)
K8S_VERSION := v1.37.2
K8S_LDFLAGS := $(foreach pkg,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(pkg).gitVersion=$(K8S_VERSION) -X $(pkg).gitMajor=1 -X $(pkg).gitMinor=37 -X $(pkg).gitTreeState=clean)
CONTROLPLANE_BINS := $(BIN)/etcd $(BIN)/kube-apiserver $(BIN)/kube-controller-manager $(BIN)/kube-scheduler $(BIN)/kubectl $(BIN)/kwok

export PATH := $(BIN):$(PATH)

.PHONY: all build image controlplane helm sops cosign chromium demo demo-down test unit e2e fuzz bench bench-compare lint clean

all: build

## build: the gitk8s binary in bin/
build:
	$(GO) build -o bin/gitk8s ./cmd/gitk8s

## image: the container image, without a Docker engine: bin/image/oci (an OCI image layout) and bin/image/gitk8s.tar (docker load)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
image:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION) -X github.com/gitk8s/gitk8s/internal/apply.Tooling=gitk8s/$(VERSION)" -o bin/image/gitk8s ./cmd/gitk8s
	$(GO) run ./cmd/imagebuild --binary bin/image/gitk8s --version $(VERSION) --layout bin/image/oci --tarball bin/image/gitk8s.tar

## controlplane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok in .cache/bin
controlplane: $(CONTROLPLANE_BINS) $(STAGES)

$(BIN)/kube-apiserver $(BIN)/kube-controller-manager $(BIN)/kube-scheduler $(BIN)/kubectl &: hack/controlplane/go.mod hack/controlplane/go.sum
	@echo "building Kubernetes v1.37.2 components (a cold build takes about 6 minutes)"
	cd hack/controlplane && $(GO) build -ldflags "$(K8S_LDFLAGS)" -o $(BIN)/ \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl

$(BIN)/etcd: hack/etcd/go.mod hack/etcd/go.sum
	cd hack/etcd && $(GO) build -o $(BIN)/etcd go.etcd.io/etcd/server/v3

$(BIN)/kwok:
	cd $(CACHE) && GOBIN=$(BIN) GOFLAGS=-mod=mod $(GO) install sigs.k8s.io/kwok/cmd/kwok@$(KWOK_VERSION)

$(STAGES): internal/controlplane/stages.go
	@mkdir -p $(CACHE)
	$(GO) run ./cmd/localcluster stages -out $(STAGES) \
		-kwok-module "$$($(GO) mod download -json sigs.k8s.io/kwok@$(KWOK_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')"

## helm: the Helm CLI of the version gitk8s renders charts with, for the tests that compare with helm template
helm: $(BIN)/helm

$(BIN)/helm:
	cd $(CACHE) && GOBIN=$(BIN) GOFLAGS=-mod=mod $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

## demo: start a local cluster and sync examples/course into it from a Git repository
demo: build controlplane
	@scripts/demo.sh "$(DEMO_DIR)" "$(CLUSTERS)"

## demo-down: stop the demo's control plane
demo-down:
	$(GO) run ./cmd/localcluster down -dir $(DEMO_DIR)

## sops: the sops CLI of the version gitk8s decrypts with, for the tests that decrypt files it encrypted
sops: $(BIN)/sops

$(BIN)/sops:
	cd $(CACHE) && GOBIN=$(BIN) GOFLAGS=-mod=mod $(GO) install github.com/getsops/sops/v3/cmd/sops@$(SOPS_VERSION)

## cosign: the cosign CLI, for the tests that verify artifacts it signed
cosign: $(BIN)/cosign

$(BIN)/cosign:
	cd $(CACHE) && GOBIN=$(BIN) GOFLAGS=-mod=mod $(GO) install github.com/sigstore/cosign/v2/cmd/cosign@$(COSIGN_VERSION)

## chromium: headless Chromium from Debian, for the browser test of the daemon's status page
chromium:
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

## test: unit tests and end-to-end tests against the local control plane, with the race detector, then the fuzzers
# A binary built with -race sleeps 1 s before it exits unless GORACE says
# otherwise, and the tests start many (renderer children among them).
test: controlplane helm sops cosign chromium
	scripts/check-tree.sh
	$(GO) vet ./...
	GORACE=atexit_sleep_ms=0 $(GO) test -race -count=1 -timeout 45m ./...
	$(MAKE) fuzz

## fuzz: every fuzz target for FUZZTIME each; their committed corpora also run in every go test
FUZZTIME ?= 15s
fuzz:
	GO=$(GO) scripts/fuzz.sh $(FUZZTIME)

## bench: gitk8s against kubectl on the same workload
bench: build controlplane
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./test/bench/
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./test/bench/multicluster/
	$(GO) test -run '^$$' -bench UnchangedRemote -benchtime 100x ./internal/source/
	$(GO) test -run '^$$' -bench OCISource -benchtime 10x ./internal/source/
	$(GO) test -run '^$$' -bench WebhookToApplied -benchtime 1x -timeout 20m ./internal/daemon/

## bench-compare: the apply and daemon benchmarks of this tree and of BASE (a commit), in one run
BASE     ?= HEAD~1
BASELINE := $(CACHE)/baseline
bench-compare: build controlplane
	rm -rf $(BASELINE) && git worktree prune && git worktree add --detach $(BASELINE) $(BASE)
	mkdir -p $(BASELINE)/.cache && ln -sfn $(BIN) $(BASELINE)/.cache/bin && ln -sfn $(STAGES) $(BASELINE)/.cache/kwok-stages.yaml
	GITK8S_BENCH_BASELINE=$(BASELINE) $(GO) test -run '^$$' -bench CourseWorkload -benchtime 1x -timeout 60m ./test/bench/
	for i in 1 2; do \
		echo "== webhook to applied: this tree"; $(GO) test -run '^$$' -bench WebhookToApplied -benchtime 1x -timeout 20m ./internal/daemon/ || exit 1; \
		echo "== webhook to applied: $(BASE)"; (cd $(BASELINE) && $(GO) test -run '^$$' -bench WebhookToApplied -benchtime 1x -timeout 20m ./internal/daemon/) || exit 1; \
	done
	git worktree remove --force $(BASELINE)

lint:
	scripts/check-tree.sh
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

clean:
	rm -rf bin $(DEMO_DIR)

# Berth — build, test, benchmark, demo. `make help` lists the targets.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# One time for a build: the last commit's, or SOURCE_DATE_EPOCH when given,
# so that two builds of one commit stamp the same date and `make package`
# gives the same bytes (reproducible-builds.org's SOURCE_DATE_EPOCH).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH
DATE ?= $(shell date -u -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w -X github.com/berthhq/berth/internal/buildinfo.Version=$(VERSION) \
	-X github.com/berthhq/berth/internal/buildinfo.Commit=$(COMMIT) \
	-X github.com/berthhq/berth/internal/buildinfo.Date=$(DATE)
# Go tests run for a long time when they start real engines; keep within CI's budget.
TEST_TIMEOUT ?= 20m

.PHONY: help deps build build-windows lint test test-short bench soak demo package clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

deps: ## install the real test components (docker.io, docker-registry, busybox, Azurite)
	bash scripts/install-test-deps.sh

build: ## build berth-agent and berth-control into bin/
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/berth-agent ./cmd/agent
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/berth-control ./cmd/control

build-windows: ## build the windows/amd64 binaries into bin/windows-amd64/
	GOOS=windows GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/windows-amd64/berth-agent.exe ./cmd/agent
	GOOS=windows GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/windows-amd64/berth-control.exe ./cmd/control

lint: ## gofmt, go vet for linux and windows
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^vendor/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...

test: deps lint build build-windows ## everything CI checks: lint, both platforms' builds, all tests on real components
	@# Artifacts (the web page's screenshots) land in test-output/_artifacts/.
	mkdir -p test-output
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -artifacts -outputdir $(CURDIR)/test-output ./...

test-short: ## unit tests only, no real components
	$(GO) test -short ./...

bench: deps build ## benchmarks against the named peers; prints figures and ratios (medians of several runs)
	set -o pipefail; $(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 60m ./cmd/agent/ ./cmd/control/ ./control/rollout/ ./imagecache/ ./imagecache/disk/ ./imagecache/blobtier/ 2>&1 | grep -v '^time='

# SOAK_ROUNDS kills per fault-injection test under `make soak`;
# PROVISION_SOAK_ROUNDS rounds of `provision` killed and run again.
SOAK_ROUNDS ?= 200
PROVISION_SOAK_ROUNDS ?= 50
# SELFUPDATE_SOAK_ROUNDS rounds of an agent self-update with a SIGKILL in it.
SELFUPDATE_SOAK_ROUNDS ?= 50
# ROLLOUT_REPLICA_SOAK_ROUNDS rollouts run by two serve replicas, one of
# them SIGKILLed at random moments.
ROLLOUT_REPLICA_SOAK_ROUNDS ?= 20

soak: deps ## SIGKILL fault injection at length, not in CI: engine switch and reporter, SOAK_ROUNDS (200) kills each, provision 50 rounds, self-update 50 rounds, serve replicas 20 rollouts; prints the tally
	bash scripts/soak.sh $(SOAK_ROUNDS) $(PROVISION_SOAK_ROUNDS) $(SELFUPDATE_SOAK_ROUNDS) $(ROLLOUT_REPLICA_SOAK_ROUNDS)

demo: deps build ## end to end on this machine: Azurite, signed packages, dockerd installed by the agent
	bash scripts/demo.sh

# make package: DIST is the output folder; SIGN_CERT/SIGN_KEY (PEM),
# SIGN_TIMESTAMP_URL and RELEASE_REPO are read from the environment or the
# make line by packaging/mkdist (docs/packaging.md).
DIST ?= dist
package: ## release files into dist/: binaries (Windows ones signed with SIGN_CERT/SIGN_KEY), agent packages, extension zips, MSI, .deb; RELEASE_REPO=DIR signs the agent packages
	$(GO) run -buildvcs=false ./packaging/mkdist -version '$(VERSION)' -commit '$(COMMIT)' -out '$(DIST)'

clean: ## remove build output
	rm -rf bin/ dist/ test-output/

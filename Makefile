# ytkeep. `make demo` shows it working; `make test` runs every test.
GO       ?= go
BIN      := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Execution counts, not durations: a duration budget can end the fuzz
# coordinator mid-run on a loaded machine and fail with no input (Go issue
# 75804), and a count explores the same inputs however fast the machine.
FUZZTIME ?= 50000x

.PHONY: all build demo test vet lint fuzz deploy-check systemd-test breach breach-report bench loadtest deps test-deps install clean deb chaos chaos-short

all: build

# Static binaries: no cgo, so no native code outside the downloader sandbox.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

deps:
	./scripts/ensure-deps.sh

test-deps:
	./scripts/ensure-deps.sh --test

demo: deps build
	./$(BIN)/ytkeep demo

test: test-deps build vet lint deploy-check
	$(GO) test -count=1 -race -timeout 25m -skip '^TestChaos$$' ./...
	$(MAKE) chaos-short
	$(MAKE) breach
	$(MAKE) fuzz

# The assume-breach suite: attack code exists only with the breach tag.
breach:
	$(GO) vet -tags breach ./...
	$(GO) vet -tags systemd ./...
	$(GO) test -count=1 -tags breach -run 'TestBreach' -v ./internal/testbed

breach-report:
	YTKEEP_BREACH_REPORT=$(CURDIR)/docs/breach-report.md $(GO) test -count=1 -tags breach -run 'TestBreach' ./internal/testbed

# systemd units (exposure <= 1.0), AppArmor profiles, users and tree.
deploy-check: build
	./scripts/check-deploy.sh

# The installed units under a real systemd (Debian 12's 252, booted in a
# systemd-nspawn container): install as the README says, serve a slash
# command, kill each daemon. As root; the container's root file system is
# built once with mmdebstrap and kept in /var/cache/ytkeep-test
# (YTKEEP_ROOTFS_CACHE). CI runs it after make test.
systemd-test: build
	./scripts/ensure-deps.sh --systemd
	$(GO) test -count=1 -tags systemd -run 'TestSystemd' -v -timeout 20m ./internal/testbed

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }

lint:
	$(GO) run $(STATICCHECK) ./...

# A short run of every fuzz target on top of its seed corpus (the seeds
# also run in the normal tests).
fuzz:
	$(GO) test -run=NONE -fuzz=FuzzParse$$ -fuzztime=$(FUZZTIME) ./internal/videourl
	$(GO) test -run=NONE -fuzz=FuzzParseJob$$ -fuzztime=$(FUZZTIME) ./internal/job
	$(GO) test -run=NONE -fuzz=FuzzParseResult$$ -fuzztime=$(FUZZTIME) ./internal/job
	$(GO) test -run=NONE -fuzz=FuzzParseStored$$ -fuzztime=$(FUZZTIME) ./internal/job
	$(GO) test -run=NONE -fuzz=FuzzParseName$$ -fuzztime=$(FUZZTIME) ./internal/job
	$(GO) test -run=NONE -fuzz=FuzzParseLaunch$$ -fuzztime=$(FUZZTIME) ./internal/job
	$(GO) test -run=NONE -fuzz=FuzzParseAlert$$ -fuzztime=$(FUZZTIME) ./internal/job
	$(GO) test -run=NONE -fuzz=FuzzParseLaunchReply$$ -fuzztime=$(FUZZTIME) ./internal/job
	$(GO) test -run=NONE -fuzz=FuzzParseProgress$$ -fuzztime=$(FUZZTIME) ./internal/job
	$(GO) test -run=NONE -fuzz=FuzzParseRequest$$ -fuzztime=$(FUZZTIME) ./internal/job
	$(GO) test -run=NONE -fuzz=FuzzParseCommand$$ -fuzztime=$(FUZZTIME) ./internal/slackreq
	$(GO) test -run=NONE -fuzz=FuzzParseAction$$ -fuzztime=$(FUZZTIME) ./internal/slackreq
	$(GO) test -run=NONE -fuzz=FuzzParseOutput$$ -fuzztime=$(FUZZTIME) ./internal/ytdlp
	$(GO) test -run=NONE -fuzz=FuzzParseProgress$$ -fuzztime=$(FUZZTIME) ./internal/ytdlp
	$(GO) test -run=NONE -fuzz=FuzzSealerOpen$$ -fuzztime=$(FUZZTIME) ./internal/reply
	$(GO) test -run=NONE -fuzz=FuzzPayloadForm$$ -fuzztime=$(FUZZTIME) ./internal/receiver
	$(GO) test -run=NONE -fuzz=FuzzParseDisconnect$$ -fuzztime=$(FUZZTIME) ./internal/receiver
	$(GO) test -run=NONE -fuzz=FuzzParseRequest$$ -fuzztime=$(FUZZTIME) ./internal/egress
	$(GO) test -run=NONE -fuzz=FuzzValidate$$ -fuzztime=$(FUZZTIME) ./internal/slackapi
	$(GO) test -run=NONE -fuzz=FuzzTruncate$$ -fuzztime=$(FUZZTIME) ./internal/slackapi
	$(GO) test -run=NONE -fuzz=FuzzRetryAfter$$ -fuzztime=$(FUZZTIME) ./internal/slackapi
	$(GO) test -run=NONE -fuzz=FuzzUploadURL$$ -fuzztime=$(FUZZTIME) ./internal/slackapi
	$(GO) test -run=NONE -fuzz=FuzzParseHistory$$ -fuzztime=$(FUZZTIME) ./internal/status
	$(GO) test -run=NONE -fuzz=FuzzEscape$$ -fuzztime=$(FUZZTIME) ./internal/status

# The chaos run with 100 commands, in make test, its counts printed.
# (The daemons' logs, shown on a failure, stay in bin/chaos.log.)
chaos-short:
	@mkdir -p $(BIN)
	$(GO) test -count=1 -run '^TestChaos$$' -v -timeout 20m ./internal/testbed > $(BIN)/chaos.log 2>&1; \
		rc=$$?; grep -Ev '^        \{|^=== RUN' $(BIN)/chaos.log; exit $$rc

# The chaos run (internal/testbed TestChaos, as root): 1,000 commands
# while daemons are SIGKILLed, the disk fills and Slack fails; writes its
# figures to docs/reliability.md. make test runs it with 100.
chaos: build
	YTKEEP_CHAOS_JOBS=$${JOBS:-1000} YTKEEP_CHAOS_REPORT=$(CURDIR)/docs/reliability.md \
		$(GO) test -count=1 -run 'TestChaos$$' -v -timeout 90m ./internal/testbed

# Benchmarks print figures; tests never time anything.
bench: build
	$(GO) test -run=NONE -bench=. -benchtime=2000x ./internal/slackreq ./internal/spool ./internal/receiver
	$(GO) test -run=NONE -bench=BenchmarkFinalMessage -benchtime=40x ./internal/courier
	./$(BIN)/ytkeep loadtest -rate 500 -duration 10s

# The Debian package $(DIST)/ytkeep_<version>_amd64.deb, the version from
# the file VERSION: deploy/deb (nfpm, a tool of tools/go.mod, out of the
# daemons' module). make install and make systemd-test install it.
DIST ?= dist
deb: build
	mkdir -p $(DIST)
	v=$$(cat VERSION) && VERSION=$$v $(GO) tool -modfile=tools/go.mod nfpm package \
		-f deploy/deb/nfpm.yaml -p deb -t $(DIST)/ytkeep_$${v}_amd64.deb

# As root: binaries, units, users, tree, AppArmor profiles, example config.
install: build
	./scripts/install.sh

loadtest: build
	./$(BIN)/ytkeep loadtest -rate $${RATE:-500} -duration $${DURATION:-10s}

clean:
	rm -rf $(BIN)

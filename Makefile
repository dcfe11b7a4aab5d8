# corepipe: make build | run | test | bench
GO       ?= go
DATA     ?= $(CURDIR)/corepipe-data
LISTEN   ?= 127.0.0.1:8080
# Tools the tests need (MinIO, nats-server, helm, etcd, kube-apiserver) are
# built here, one directory per tool and version, shared by every clone.
export COREPIPE_CACHE ?= $(HOME)/.cache/corepipe

# Installing the kernel handler needs root; without it `make run` still
# serves the UI and the pipeline, it just catches no crashes.
HANDLER  := $(shell [ "$$(id -u)" = 0 ] && echo --install-handler)

.PHONY: build run test bench tools vet clean

build:
	$(GO) build -o bin/corepipe ./cmd/corepipe
	$(GO) build -o bin/corepipe-collector ./cmd/corepipe-collector

run: build
	@[ -n "$(HANDLER)" ] || echo "corepipe: not root, so the crash handler is not installed (run as root to catch crashes)"
	bin/corepipe dev --data $(DATA) --listen $(LISTEN) $(HANDLER)

tools:
	scripts/install-tools.sh

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

test: tools vet build
	$(GO) test -count=1 -timeout 25m ./...

bench: tools build
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin

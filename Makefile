# The README's two commands are `make run` and `make test`; everything they
# need on a fresh Debian machine is installed by scripts/setup.sh.
GO        ?= go
CONFIG    ?= config.toml
BIN       := bin/threatbus
PKG       := github.com/threatbus/threatbus
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X $(PKG)/internal/buildinfo.Version=$(VERSION)
PROTOC_GEN_GO_VERSION := v1.36.12

.PHONY: all build run test bench proto setup fuzz clean

all: build

setup:
	@scripts/setup.sh

build: setup
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/threatbus

run: build
	./$(BIN) run -c $(CONFIG)

test:
	@scripts/setup.sh --test
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

bench: setup
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

# Regenerates messages/*.pb.go; the generated code is committed.
proto:
	@command -v protoc >/dev/null || apt-get install -y protobuf-compiler
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc \
		-I messages \
		-I "$$($(GO) list -m -f '{{.Dir}}' github.com/asynkron/protoactor-go)/actor" \
		--go_out=. --go_opt=module=$(PKG) \
		messages/*.proto
	# -I plugins: the file registers as backbones/cluster/wire.proto, since
	# protoactor already registers a cluster.proto.
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc \
		-I messages \
		-I "$$($(GO) list -m -f '{{.Dir}}' github.com/asynkron/protoactor-go)/actor" \
		-I plugins \
		--go_out=. --go_opt=module=$(PKG) \
		plugins/backbones/cluster/wire.proto

# Each fuzz target for a minute.
fuzz: setup
	$(GO) test -run '^$$' -fuzz '^FuzzParsePattern$$' -fuzztime 60s ./messages/stix/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 60s ./messages/stix/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRequest$$' -fuzztime 60s ./plugins/apps/zmq/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeFrame$$' -fuzztime 60s ./plugins/apps/zmq/
	$(GO) test -run '^$$' -fuzz '^FuzzAttribute$$' -fuzztime 60s ./plugins/apps/misp/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 60s ./plugins/apps/zeek/brokerjson/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 60s ./plugins/backbones/rabbitmq/

clean:
	rm -rf bin

# llmgate: `make demo` shows it working, `make test` proves it.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin/llmgate

.PHONY: all build test test-short demo bench lint fuzz clean sdk-test deploy-check

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/llmgate

# The whole suite under the race detector (it needs cgo, so it is on here).
test: lint
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m ./...

# The official SDKs (openai-go, and the openai npm package through node)
# against a real node; its own module, so go.mod stays free of them.
sdk-test:
	npm ci --prefix sdktest/node --no-audit --no-fund
	cd sdktest && $(GO) vet ./... && CGO_ENABLED=0 $(GO) test -count=1 ./...

test-short:
	$(GO) test -count=1 -short ./...

demo: build
	./$(BIN) demo

# Packaging (deploy/): helm lint and template with Helm as a Go module, the
# rendered manifests decoded strictly into the Kubernetes API types and
# validated against the Kubernetes OpenAPI schema (from the k8s.io/kubernetes
# module, through the Go module proxy), the
# compose file through the Compose specification's loader, the systemd unit
# through systemd-analyze, the Dockerfile's shape, and config check of every
# shipped configuration. Its own Go module (deploy/check), so Helm stays out
# of the gateway's.
deploy-check: build
	cd deploy/check && $(GO) vet . && $(GO) run . -root ../.. -llmgate ../../bin/llmgate

# Every scenario; quota alone takes about five minutes (two modes of 150s).
bench: build
	./$(BIN) bench overhead --features keys,tpm,cache-miss,cache-hit --out bench-overhead.json
	./$(BIN) bench quota --out bench-quota.json

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Short fuzzing of the wire parsers and decoders (FUZZTIME=30s make fuzz for longer).
FUZZTIME ?= 10s
fuzz:
	$(GO) test ./internal/openai -run '^$$' -fuzz FuzzParseChat -fuzztime $(FUZZTIME)
	$(GO) test ./internal/openai -run '^$$' -fuzz FuzzParseEmbeddings -fuzztime $(FUZZTIME)
	$(GO) test ./internal/openai -run '^$$' -fuzz FuzzEventReader -fuzztime $(FUZZTIME)
	$(GO) test ./internal/openai -run '^$$' -fuzz FuzzParseResponses -fuzztime $(FUZZTIME)
	$(GO) test ./internal/mock -run '^$$' -fuzz FuzzExampleJSON -fuzztime $(FUZZTIME)
	$(GO) test ./affinity -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)
	$(GO) test ./affinity -run '^$$' -fuzz FuzzValueRoundTrip -fuzztime $(FUZZTIME)
	$(GO) test ./internal/openai -run '^$$' -fuzz FuzzDecoderAgreesWithExactReader -fuzztime $(FUZZTIME)
	$(GO) test ./internal/config -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
	$(GO) test ./internal/tokens -run '^$$' -fuzz FuzzCountIsExact -fuzztime $(FUZZTIME)
	$(GO) test ./internal/tokens -run '^$$' -fuzz FuzzChatBound -fuzztime $(FUZZTIME)
	$(GO) test ./node -run '^$$' -fuzz FuzzStreamTap -fuzztime $(FUZZTIME)
	$(GO) test ./node -run '^$$' -fuzz FuzzReadChatMatchesDecoding -fuzztime $(FUZZTIME)
	$(GO) test ./node -run '^$$' -fuzz FuzzReadResponseMatchesDecoding -fuzztime $(FUZZTIME)
	$(GO) test ./node -run '^$$' -fuzz FuzzResponsesBoundIsAtLeastTheEstimate -fuzztime $(FUZZTIME)
	$(GO) test ./node -run '^$$' -fuzz FuzzPlanKeysAreTheDecodedOnes -fuzztime $(FUZZTIME)
	$(GO) test ./internal/openai -run '^$$' -fuzz FuzzPromptFloorIsALowerBound -fuzztime $(FUZZTIME)
	$(GO) test ./internal/openai -run '^$$' -fuzz FuzzScanChatMatchesDecoding -fuzztime $(FUZZTIME)
	$(GO) test ./internal/openai -run '^$$' -fuzz FuzzValidMatchesDecoding -fuzztime $(FUZZTIME)
	$(GO) test ./internal/openai -run '^$$' -fuzz FuzzScanResponsesMatchesDecoding -fuzztime $(FUZZTIME)
	$(GO) test ./internal/openai -run '^$$' -fuzz FuzzJSONStringIsMarshals -fuzztime $(FUZZTIME)
	$(GO) test ./affinity -run '^$$' -fuzz FuzzEncodeIsMarshal -fuzztime $(FUZZTIME)
	$(GO) test ./node -run '^$$' -fuzz FuzzLengthFloorBelowCount -fuzztime $(FUZZTIME)
	$(GO) test ./index -run '^$$' -fuzz FuzzCanonicalHash -fuzztime $(FUZZTIME)
	$(GO) test ./index -run '^$$' -fuzz FuzzCanonicalMatchesReference -fuzztime $(FUZZTIME)
	$(GO) test ./internal/embed -run '^$$' -fuzz FuzzEmbedMatchesReference -fuzztime $(FUZZTIME)
	$(GO) test ./index/norm -run '^$$' -fuzz FuzzTextMatchesReference -fuzztime $(FUZZTIME)
	$(GO) test ./index -run '^$$' -fuzz FuzzDecodeEntry -fuzztime $(FUZZTIME)
	$(GO) test ./index/guard -run '^$$' -fuzz FuzzCheck -fuzztime $(FUZZTIME)
	$(GO) test ./index/norm -run '^$$' -fuzz FuzzText -fuzztime $(FUZZTIME)
	$(GO) test ./quota -run '^$$' -fuzz FuzzDecodeCounter -fuzztime $(FUZZTIME)
	$(GO) test ./telemetry -run '^$$' -fuzz FuzzKeyValueEncoding -fuzztime $(FUZZTIME)
	$(GO) test ./telemetry -run '^$$' -fuzz FuzzOTLPHeaders -fuzztime $(FUZZTIME)
	$(GO) test ./telemetry -run '^$$' -fuzz FuzzPartialSuccess -fuzztime $(FUZZTIME)
	$(GO) test ./quota -run '^$$' -fuzz FuzzDecodeUsages -fuzztime $(FUZZTIME)
	$(GO) test ./quota -run '^$$' -fuzz FuzzDecodeLimitRecords -fuzztime $(FUZZTIME)
	$(GO) test ./index -run '^$$' -fuzz FuzzDecodeChange -fuzztime $(FUZZTIME)
	$(GO) test ./index/graph -run '^$$' -fuzz '^FuzzDot$$' -fuzztime $(FUZZTIME)
	$(GO) test ./index/graph -run '^$$' -fuzz '^FuzzDotsInt8$$' -fuzztime $(FUZZTIME)
	$(GO) test ./cluster -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)
	$(GO) test ./identity -run '^$$' -fuzz FuzzDecodeRecords -fuzztime $(FUZZTIME)
	$(GO) test ./identity -run '^$$' -fuzz FuzzJWTAuthenticate -fuzztime $(FUZZTIME)
	$(GO) test ./usage -run '^$$' -fuzz FuzzDecodeRows -fuzztime $(FUZZTIME)

clean:
	rm -rf bin bench-*.json

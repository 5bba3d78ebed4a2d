package api

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/telemetry"
)

// BenchmarkTracing is one chat request through the front end and the
// pipeline (in process, over loopback), with tracing off, on for every
// request, and one request in ten; on and sampled export spans and OTLP
// metrics over OTLP/HTTP to a loopback receiver that discards them.
// Compare ns/op and allocs/op of the three within one run: the difference
// is what tracing costs a request (the exporter's work included, as it runs
// on the same CPUs).
func BenchmarkTracing(b *testing.B) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer sink.Close()
	up := newUpstream(b, okChat("east"))
	for _, tc := range []struct {
		name  string
		ratio float64
	}{{"off", 0}, {"every request", 1}, {"one in ten", 0.1}} {
		b.Run(tc.name, func(b *testing.B) {
			s := twoBackends(up, up)
			if tc.ratio > 0 {
				o, err := telemetry.NewOTLP(context.Background(), telemetry.OTLPOptions{Endpoint: sink.URL, Node: "gw-test", SampleRatio: tc.ratio})
				if err != nil {
					b.Fatal(err)
				}
				defer func() { _ = o.Shutdown(context.Background()) }()
				s.tracer, s.observer = o.Tracer(), o
			}
			g := newGateway(b, s)
			client := &http.Client{}
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest("POST", g.data.URL+"/v1/chat/completions", strings.NewReader(chatBody))
				req.Header.Set("api-key", keyA)
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}

package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
)

// The request and answer of `llmgate bench overhead` (about 200 prompt
// tokens; the mock's answer).
const (
	overheadBody = `{"model":"gpt-4o","messages":[` +
		`{"role":"system","content":"You are a careful assistant for an engineering team. Answer in plain English, cite the relevant section of the document when you can, and say so when the document does not answer the question. Keep answers under five sentences."},` +
		`{"role":"user","content":"Our deployment runs three gateway nodes behind a load balancer, each with 2 vCPUs and 4 GiB of memory. Last week the p99 latency rose from 180 ms to 1.2 s during the nightly batch (about 40,000 requests between 01:00 and 02:00 UTC), while CPU stayed below 60%. The backend's x-ratelimit-remaining-tokens header dropped to zero several times. Which of these is the most likely cause, and what should we change first: the TPM limits of the batch consumer, the priority groups of the route, or the size of the nodes?"}` +
		`],"max_tokens":16}`
	overheadAnswer = `{"id":"chatcmpl-UPEZGICTD3SCHFN7MNH4RGHCFW","object":"chat.completion","created":1796584302,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Better top had have last few page night form means. Four then almost an slow"},"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":23,"completion_tokens":16,"total_tokens":39}}`
)

// BenchmarkSerialOverhead sends the overhead benchmark's chat request, one
// at a time over loopback, to a bare httputil.ReverseProxy, to a node with
// keys and a TPM (cache off) and to a node with keys only, all in front of
// the same zero-latency upstream. With one request in flight, a target's
// time is its serial path: a node's time minus the proxy's is what it adds
// to a request's latency at low load, hand-offs between goroutines
// included. The targets are alternated request by request; the metrics are
// medians (ns/op is the three requests').
func BenchmarkSerialOverhead(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, overheadAnswer)
	}))
	defer up.Close()
	target, _ := url.Parse(up.URL)
	proxy := httptest.NewServer(httputil.NewSingleHostReverseProxy(target))
	defer proxy.Close()
	s := setup{
		backends: []config.Backend{{Name: "primary", Kind: "openai", URL: up.URL, APIKey: "upstream-key-1"}},
		routes:   map[string]config.Route{"gpt-4o": {Pool: [][]string{{"primary"}}}},
		limits:   true,
		mutate:   func(c *config.Config) { c.Consumers[0].TPM = 1_000_000_000 },
	}
	g := newGateway(b, s)
	s.limits = false
	keys := newGateway(b, s)
	targets := []string{proxy.URL + "/v1/chat/completions", g.data.URL + "/v1/chat/completions", keys.data.URL + "/v1/chat/completions"}
	clients := []*http.Client{{Transport: &http.Transport{}}, {Transport: &http.Transport{}}, {Transport: &http.Transport{}}}
	var lat [3][]time.Duration
	send := func(i int) {
		req, _ := http.NewRequest("POST", targets[i], strings.NewReader(overheadBody))
		req.Header.Set("api-key", keyA)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := clients[i].Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat[i] = append(lat[i], time.Since(start))
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	for i := range targets {
		send(i)
		lat[i] = lat[i][:0]
	}
	for b.Loop() {
		// Alternated, so that all see the same machine.
		for i := range targets {
			send(i)
		}
	}
	for i := range clients {
		clients[i].CloseIdleConnections()
		slices.Sort(lat[i])
	}
	p50 := func(l []time.Duration) float64 { return float64(l[len(l)/2].Nanoseconds()) / 1000 }
	b.ReportMetric(p50(lat[0]), "proxy-p50-µs")
	b.ReportMetric(p50(lat[1]), "node-p50-µs")
	b.ReportMetric(p50(lat[1])-p50(lat[0]), "added-p50-µs")
	b.ReportMetric(p50(lat[2])-p50(lat[0]), "keys-added-p50-µs")
}

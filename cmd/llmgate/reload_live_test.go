package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	tracev1 "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// traceReceiver is an OTLP/HTTP collector on loopback that records the
// spans it gets by trace id and parent span id: the gateway's own span of a
// request is the child of the client's span named in traceparent, and it
// ends last, when the answer (a stream's last chunk) has gone out.
type traceReceiver struct {
	url    string
	mu     sync.Mutex
	traces map[string]bool
}

func newTraceReceiver(t *testing.T) *traceReceiver {
	t.Helper()
	r := &traceReceiver{traces: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if req.URL.Path == "/v1/traces" {
			var m tracev1.ExportTraceServiceRequest
			if err := proto.Unmarshal(body, &m); err == nil {
				r.mu.Lock()
				for _, rs := range m.ResourceSpans {
					for _, ss := range rs.ScopeSpans {
						for _, sp := range ss.Spans {
							r.traces[hex.EncodeToString(sp.TraceId)+"/"+hex.EncodeToString(sp.ParentSpanId)] = true
						}
					}
				}
				r.mu.Unlock()
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

// has reports whether the gateway's span of the request the client sent
// with traceparent 00-traceID-parentID-01 arrived.
func (r *traceReceiver) has(traceID, parentID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.traces[traceID+"/"+parentID]
}

// liveConfig is the reload test's configuration before (after = false) and
// after the reload: every setting a reload applies differs between the two.
func (n *reloadNode) liveConfig(t *testing.T, issuer, otlp string, after bool) {
	t.Helper()
	head := fmt.Sprintf(`node: {name: gw-r, data_dir: %s/data}
listen: %s
admin_listen: %s
cluster: {gossip: %s}
admin_token: ${TEST_ADMIN_TOKEN}
backends:
  - {name: slow, kind: openai, url: %s/v1}
  - {name: fast, kind: openai, url: %s/v1}
`, n.dir, n.listen, n.admin, n.gossip, n.slow, n.fast)
	body := fmt.Sprintf(`routes:
  gpt-4o: {pool: [[slow]], price: {input_per_1m: 1}}
consumers:
  - {name: team-a, keys: ["${TEST_TEAM_KEY}"], tpm: 1000000, client_ids: [app-a]}
auth:
  jwt: [{issuer: %q, audience: "api://before", user_claim: oid}]
cache: {enabled: true, score_threshold: 0.04, ttl: 10m, max_entries: 1000}
telemetry: {otlp_endpoint: %q, log_requests: true, capture_content: false, usage_retention: 9600h}
log: {level: info}
`, issuer, otlp)
	if after {
		body = fmt.Sprintf(`routes:
  gpt-4o: {pool: [[slow]], price: {input_per_1m: 1}}
  gpt-4o-mini: {pool: [[fast]], price: {input_per_1m: 1000, output_per_1m: 1000}}
consumers:
  - {name: team-a, keys: ["${TEST_TEAM_KEY}"], tpm: 1000000, client_ids: [app-a]}
  - {name: team-b, keys: [sk-team-b], tpm: 4242, client_ids: [app-b]}
auth:
  jwt: [{issuer: %q, audience: "api://after", user_claim: oid}]
cache: {enabled: true, score_threshold: 0.02, ttl: 2h, max_entries: 2}
telemetry: {otlp_endpoint: %q, trace_sample_ratio: 0.5, log_requests: true, capture_content: true, capture_bytes: 200, usage_retention: 720h}
log: {level: debug}
server: {max_body_bytes: 65536}
limits: {default_completion_tokens: 512}
`, issuer, otlp)
	}
	if err := os.WriteFile(n.path, []byte(head+body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// call sends a chat request with the given credential and headers.
func (n *reloadNode) call(t *testing.T, credential, model, prompt string, stream bool, headers ...string) (int, string) {
	t.Helper()
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":60,"stream":%v}`, model, prompt, stream)
	req, _ := http.NewRequest("POST", "http://"+n.listen+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+credential)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReloadAppliesTelemetryAuthAndCacheLive changes every setting a reload
// applies (telemetry, token issuers and client ids, cache TTL and
// max_entries included) while a stream is in flight and requests run: none
// fails, and each change takes effect. The stream started before the
// reload is traced to the old collector, whose exporter is shut down only
// after the stream ends; requests after it go to the new one.
func TestReloadAppliesTelemetryAuthAndCacheLive(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	issuer, err := startDemoIssuer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(issuer.stop)
	token := func(aud, clientID string) string {
		now := time.Now()
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": issuer.url, "aud": aud, "azp": clientID, "oid": "u1",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
		tok.Header["kid"] = "demo-1"
		s, err := tok.SignedString(issuer.key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before, after := newTraceReceiver(t), newTraceReceiver(t)
	dir := t.TempDir()
	n := &reloadNode{dir: dir, path: dir + "/llmgate.yaml", listen: freeAddr(t), admin: freeAddr(t), gossip: freeAddr(t),
		slow: startMockWith(t, "slow", "--latency", "0", "--token-rate", "40"),
		fast: startMockWith(t, "fast", "--latency", "0")}
	n.liveConfig(t, issuer.url, before.url, false)
	n.proc = start(t, "serve", "--config", n.path)
	waitReady(t, "http://"+n.listen+"/readyz")

	// Before: tokens for the first audience work; four cache entries.
	if code, body := n.call(t, token("api://before", "app-a"), "gpt-4o", "token before", false); code != 200 {
		t.Fatalf("a token for the configured audience: %d %s", code, body)
	}
	for i := range 4 {
		if code, body := n.call(t, "sk-from-env", "gpt-4o", fmt.Sprintf("cached question %d about topic %d", i, i*7), false, "x-llmgate-cache", "on"); code != 200 {
			t.Fatalf("cacheable request: %d %s", code, body)
		}
	}
	cacheEntries := func() int64 {
		var st struct {
			Entries int64 `json:"entries"`
		}
		n.adminCall(t, "GET", "/admin/cache/stats", "", &st)
		return st.Entries
	}
	waitFor(t, 20*time.Second, "four cache entries", func() bool { return cacheEntries() >= 4 })

	// A traced stream in flight across the reload, and requests all along.
	const (
		streamTrace, streamParent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
		afterTrace, afterParent   = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	)
	type result struct {
		code int
		body string
	}
	streamDone := make(chan result, 1)
	go func() {
		code, body := n.call(t, "sk-from-env", "gpt-4o", "capture-me-before: a long story", true,
			"x-llmgate-cache", "off", "traceparent", "00-"+streamTrace+"-"+streamParent+"-01")
		streamDone <- result{code, body}
	}()
	checkLoops := requestLoops(t, 3, func(w, i int) (int, string) {
		return n.call(t, "sk-from-env", "gpt-4o", fmt.Sprintf("w%d-%d", w, i), false, "x-llmgate-cache", "off")
	})
	time.Sleep(300 * time.Millisecond) // the stream has started

	n.liveConfig(t, issuer.url, after.url, true)
	var ok struct {
		Reloaded bool     `json:"reloaded"`
		Changed  []string `json:"changed"`
	}
	if code, body := n.adminCall(t, "POST", "/admin/config/reload", "", &ok); code != 200 || !ok.Reloaded {
		t.Fatalf("reload: %d %s", code, body)
	}
	for _, want := range []string{"routes", "consumers", "auth.jwt", "cache.score_threshold", "cache.ttl", "cache.max_entries",
		"telemetry.otlp_endpoint", "telemetry.trace_sample_ratio", "telemetry.capture_content", "telemetry.capture_bytes",
		"telemetry.usage_retention", "log.level", "server.max_body_bytes", "limits.default_completion_tokens"} {
		if !strings.Contains(","+strings.Join(ok.Changed, ",")+",", ","+want+",") {
			t.Errorf("changed = %v, missing %s", ok.Changed, want)
		}
	}

	// cache.max_entries: the running index is cut to 2 before the reload
	// answers. cache.ttl: a new entry lives 2 hours (it outlives the older
	// ones, which max_entries evicts first).
	if got := cacheEntries(); got > 2 {
		t.Errorf("cache entries = %d after max_entries went to 2", got)
	}
	if code, body := n.call(t, "sk-from-env", "gpt-4o", "a question stored under the new ttl", false, "x-llmgate-cache", "on"); code != 200 {
		t.Fatalf("cacheable request after the reload: %d %s", code, body)
	}
	var list struct {
		Entries []struct {
			Prompt    string    `json:"prompt"`
			CreatedAt time.Time `json:"created_at"`
			ExpiresAt time.Time `json:"expires_at"`
		} `json:"entries"`
	}
	n.adminCall(t, "GET", "/admin/cache/entries?limit=100", "", &list)
	found := false
	for _, e := range list.Entries {
		if strings.Contains(e.Prompt, "new ttl") {
			found = true
			if life := e.ExpiresAt.Sub(e.CreatedAt); life != 2*time.Hour {
				t.Errorf("an entry stored after the reload lives %v, want the new ttl of 2h", life)
			}
		}
	}
	if !found {
		t.Errorf("the entry stored after the reload is not listed: %+v", list.Entries)
	}

	// auth.jwt and client_ids: the new audience and team-b's client id
	// authenticate; the old audience does not.
	if code, body := n.call(t, token("api://after", "app-b"), "gpt-4o-mini", "token after", false, "x-llmgate-cache", "off"); code != 200 {
		t.Errorf("team-b's token for the new audience: %d %s", code, body)
	}
	if code, _ := n.call(t, token("api://before", "app-a"), "gpt-4o", "old audience", false); code != 401 {
		t.Errorf("a token for the old audience after the reload: %d, want 401", code)
	}

	// telemetry: a request after the reload is traced to the new collector,
	// with its prompt captured in the request log.
	if code, body := n.call(t, "sk-team-b", "gpt-4o-mini", "capture-me-after", false,
		"x-llmgate-cache", "off", "traceparent", "00-"+afterTrace+"-"+afterParent+"-01"); code != 200 {
		t.Fatalf("team-b after the reload: %d %s", code, body)
	}

	// The stream that started before the reload finished whole.
	select {
	case r := <-streamDone:
		if r.code != 200 || !strings.Contains(r.body, "data: [DONE]") || strings.Contains(r.body, `"error"`) {
			t.Errorf("the stream in flight was disturbed: %d %s", r.code, r.body)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the stream in flight never finished")
	}
	checkLoops()
	waitFor(t, 30*time.Second, "the in-flight stream's trace at the old collector (its exporter flushed after the stream)", func() bool {
		return before.has(streamTrace, streamParent)
	})
	waitFor(t, 30*time.Second, "the new request's trace at the new collector", func() bool { return after.has(afterTrace, afterParent) })
	if after.has(streamTrace, streamParent) || before.has(afterTrace, afterParent) {
		t.Error("a trace went to the other generation's collector")
	}

	// Per-consumer metrics know the new consumer and route (not "other").
	_, metrics := n.adminCall(t, "GET", "/metrics", "", nil)
	if !strings.Contains(metrics, `llmgate_consumer_requests_total{cache="off",code="200",consumer="team-b",route="gpt-4o-mini"}`) &&
		!strings.Contains(metrics, `consumer="team-b",route="gpt-4o-mini"`) {
		t.Errorf("team-b's requests on gpt-4o-mini are not counted under their names:\n%s", grepLines(metrics, "llmgate_consumer_requests_total"))
	}
	// The usage history costs requests at the reloaded prices.
	waitFor(t, 20*time.Second, "gpt-4o-mini's cost in the usage history", func() bool {
		var u struct {
			Rows []struct {
				Route   string  `json:"route"`
				CostUSD float64 `json:"cost_usd"`
			} `json:"rows"`
		}
		n.adminCall(t, "GET", "/admin/usage", "", &u)
		for _, r := range u.Rows {
			if r.Route == "gpt-4o-mini" && r.CostUSD > 0 {
				return true
			}
		}
		return false
	})

	_ = n.proc.cmd.Process.Signal(os.Interrupt)
	_ = n.proc.wait(t, 30*time.Second)
	logs := n.proc.stderr.String()
	if !strings.Contains(logs, "capture-me-after") {
		t.Error("capture_content turned on by the reload: the request's prompt is not in the request log")
	}
	if strings.Contains(logs, "capture-me-before") {
		t.Error("the stream that started before capture_content was turned on had its prompt captured")
	}
	var reloadLine map[string]any
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `"configuration reloaded"`) {
			_ = json.Unmarshal([]byte(l), &reloadLine)
		}
	}
	if reloadLine == nil {
		t.Error("the reload is not logged")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

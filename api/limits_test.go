package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
)

// limited is a node whose team-a has the given TPM and daily quota.
func limited(t *testing.T, up *upstream, tpm, quotaTokens int64) *gateway {
	t.Helper()
	s := twoBackends(up, up)
	s.limits = true
	s.mutate = func(c *config.Config) {
		c.Consumers[0].TPM = tpm
		if quotaTokens > 0 {
			c.Consumers[0].Quota = config.Quota{Tokens: quotaTokens, Period: "daily"}
		}
	}
	return newGateway(t, s)
}

func chatWithMax(max int) string {
	return `{"model":"gpt-4o","max_tokens":` + strconv.Itoa(max) + `,"messages":[{"role":"user","content":"hello"}]}`
}

func TestTPMReservesThenSettles(t *testing.T) {
	noLeaks(t)
	up := newUpstream(t, okChat("east")) // usage: 8 tokens
	g := limited(t, up, 100, 0)
	url := g.data.URL + "/v1/chat/completions"

	a := do(t, "POST", url, keyA, chatWithMax(80))
	if a.status != 200 {
		t.Fatalf("first request: %d %s", a.status, a.body)
	}
	if got := a.header.Get("x-llmgate-tokens-consumed"); got != "8" {
		t.Errorf("x-llmgate-tokens-consumed = %q, want the reply's usage 8", got)
	}
	if got := a.header.Get("x-ratelimit-limit-tokens"); got != "100" {
		t.Errorf("x-ratelimit-limit-tokens = %q, want 100", got)
	}
	if got := a.header.Get("x-ratelimit-remaining-tokens"); got != "92" {
		t.Errorf("x-ratelimit-remaining-tokens = %q, want 92 after settling to 8", got)
	}
	// 8 used + (prompt 8 + 90 allowance) > 100: refused before any backend call.
	calls := up.calls.Load()
	a = do(t, "POST", url, keyA, chatWithMax(90))
	if a.status != http.StatusTooManyRequests || a.errorCode(t) != "rate_limit_exceeded" {
		t.Fatalf("over the window: %d %s", a.status, a.body)
	}
	ra, err := strconv.Atoi(a.header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 61 {
		t.Errorf("Retry-After = %q, want whole seconds within the window", a.header.Get("Retry-After"))
	}
	ms, err := strconv.Atoi(a.header.Get("retry-after-ms"))
	if err != nil || ms < 1 || ms > 61000 || (ms+999)/1000 != ra {
		t.Errorf("retry-after-ms = %q does not round up to Retry-After %d", a.header.Get("retry-after-ms"), ra)
	}
	if up.calls.Load() != calls {
		t.Error("a refused request reached the backend")
	}
	// Another consumer has its own (unlimited) counter.
	if a := do(t, "POST", url, keyB, chatWithMax(90)); a.status != 200 {
		t.Errorf("team-b: %d", a.status)
	}
}

func TestTooLargeIsRefusedAtOnce(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	g := limited(t, up, 100, 0)
	a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatWithMax(5000))
	if a.status != http.StatusTooManyRequests || a.errorCode(t) != "rate_limit_exceeded" {
		t.Fatalf("got %d %s", a.status, a.body)
	}
	if !bytes.Contains(a.body, []byte("never")) {
		t.Errorf("the message must say the request can never fit: %s", a.body)
	}
	if up.calls.Load() != 0 {
		t.Error("reached the backend")
	}
}

func TestQuotaExhaustedIs403(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	g := limited(t, up, 0, 20)
	url := g.data.URL + "/v1/chat/completions"
	if a := do(t, "POST", url, keyA, chatWithMax(5)); a.status != 200 {
		t.Fatalf("first: %d %s", a.status, a.body)
	}
	a := do(t, "POST", url, keyA, chatWithMax(5))
	if a.status != http.StatusForbidden || a.errorCode(t) != "quota_exceeded" {
		t.Fatalf("second: %d %s", a.status, a.body)
	}
	if ra, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || ra < 1 || ra > 86400 {
		t.Errorf("Retry-After = %q, want seconds to the day's end", a.header.Get("Retry-After"))
	}
}

// streamingUpstream streams two content chunks, then the usage chunk when
// the request asked for it, then [DONE].
func streamingUpstream(t *testing.T, sawUsageOption *bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct {
			StreamOptions *struct {
				IncludeUsage bool `json:"include_usage"`
			} `json:"stream_options"`
		}
		_ = json.Unmarshal(body, &req)
		*sawUsageOption = req.StreamOptions != nil && req.StreamOptions.IncludeUsage
		w.Header().Set("Content-Type", "text/event-stream")
		for _, c := range []string{
			`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi "},"finish_reason":null}]}`,
			`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"there"},"finish_reason":"stop"}]}`,
		} {
			_, _ = io.WriteString(w, "data: "+c+"\n\n")
		}
		if *sawUsageOption {
			_, _ = io.WriteString(w, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}`+"\n\n")
		}
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	}
}

func streamRequest(t *testing.T, url, key, body string) (events []string, trailer http.Header) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("api-key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, d)
		}
	}
	return events, resp.Trailer
}

func TestStreamSettlesFromUsageChunk(t *testing.T) {
	noLeaks(t)
	var saw bool
	up := newUpstream(t, streamingUpstream(t, &saw))
	g := limited(t, up, 5000, 0)
	url := g.data.URL + "/v1/chat/completions"

	tests := []struct {
		name      string
		body      string
		wantUsage bool
	}{
		{"client without include_usage does not see the usage chunk", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`, false},
		{"client with include_usage sees it", `{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			events, trailer := streamRequest(t, url, keyA, tc.body)
			if !saw {
				t.Error("the gateway did not ask the backend for usage")
			}
			gotUsage := false
			for _, e := range events {
				gotUsage = gotUsage || strings.Contains(e, `"usage"`)
			}
			if gotUsage != tc.wantUsage {
				t.Errorf("usage chunk relayed = %v, want %v: %q", gotUsage, tc.wantUsage, events)
			}
			if len(events) == 0 || events[len(events)-1] != "[DONE]" {
				t.Errorf("stream must end with [DONE]: %q", events)
			}
			if got := trailer.Get("x-llmgate-tokens-consumed"); got != "11" {
				t.Errorf("trailer x-llmgate-tokens-consumed = %q, want 11", got)
			}
		})
	}
}

func TestStreamWithoutUsageCountsText(t *testing.T) {
	// An older Azure api-version gets no stream_options; the charge is the
	// prompt estimate plus the streamed text counted.
	var saw bool
	up := newUpstream(t, streamingUpstream(t, &saw))
	g := limited(t, up, 5000, 0)
	events, trailer := streamRequest(t, g.data.URL+"/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01", keyA,
		`{"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if saw {
		t.Error("stream_options sent to an api-version that does not know it")
	}
	if len(events) != 3 {
		t.Errorf("events: %q", events)
	}
	n, err := strconv.Atoi(trailer.Get("x-llmgate-tokens-consumed"))
	// prompt "hi" = 8 by the chat rule, "Hi there" = 2 tokens.
	if err != nil || n != 10 {
		t.Errorf("charged %q, want 10 (prompt estimate 8 + 2 counted)", trailer.Get("x-llmgate-tokens-consumed"))
	}
}

func TestQuotaAdmin(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	g := limited(t, up, 100, 1000)
	if a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatWithMax(10)); a.status != 200 {
		t.Fatal(a.status)
	}
	a := do(t, "GET", g.admin.URL+"/admin/quota/team-a", "", "")
	var s map[string]any
	if err := json.Unmarshal(a.body, &s); err != nil || a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	for _, f := range []string{"consumer", "tpm_limit", "tpm_used", "tpm_remaining", "quota_limit", "quota_period", "quota_used", "quota_resets_at", "by_node"} {
		if _, ok := s[f]; !ok {
			t.Errorf("field %q missing: %s", f, a.body)
		}
	}
	if s["tpm_used"].(float64) != 8 || s["quota_used"].(float64) != 8 {
		t.Errorf("used: %s", a.body)
	}
	a = do(t, "PUT", g.admin.URL+"/admin/quota/team-a", "", `{"tpm":5}`)
	if a.status != 200 || !bytes.Contains(a.body, []byte(`"tpm_limit":5`)) {
		t.Fatalf("PUT: %d %s", a.status, a.body)
	}
	if a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatWithMax(10)); a.status != 429 {
		t.Errorf("after lowering the limit: %d", a.status)
	}
	for _, tc := range []struct{ body, want string }{{`{"tpm":-1}`, "400"}, {`{"colour":1}`, "400"}, {`{}`, "400"}} {
		if a := do(t, "PUT", g.admin.URL+"/admin/quota/team-a", "", tc.body); strconv.Itoa(a.status) != tc.want {
			t.Errorf("PUT %s: %d", tc.body, a.status)
		}
	}
	if a := do(t, "PUT", g.admin.URL+"/admin/quota/nobody", "", `{"tpm":1}`); a.status != 404 {
		t.Errorf("unknown consumer: %d", a.status)
	}
	if a := do(t, "GET", g.admin.URL+"/admin/quota", "", ""); a.status != 200 || !bytes.Contains(a.body, []byte(`"consumers"`)) {
		t.Errorf("list: %d %s", a.status, a.body)
	}
}

func TestHostileInputsAnsweredQuickly(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	g := limited(t, up, 10000, 0)
	url := g.data.URL + "/v1/chat/completions"
	manyMessages := `{"model":"gpt-4o","messages":[` + strings.Repeat(`{"role":"user","content":"x"},`, 50000) + `{"role":"user","content":"x"}]}`
	whitespace, _ := json.Marshal(strings.Repeat("\n \n", 700_000)) // 2.1 MB, quadratic for a naive tokenizer
	tests := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"50k messages", manyMessages, 400, "invalid_request_error"},
		{"negative max_tokens", chatWithMax(-5), 400, "invalid_request_error"},
		{"absurd max_tokens", `{"model":"gpt-4o","max_tokens":1000000000000000,"messages":[{"role":"user","content":"hi"}]}`, 429, "rate_limit_exceeded"},
		{"huge whitespace run", `{"model":"gpt-4o","messages":[{"role":"user","content":` + string(whitespace) + `}]}`, 429, "rate_limit_exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			a := do(t, "POST", url, keyA, tc.body)
			if a.status != tc.status || a.errorCode(t) != tc.code {
				t.Fatalf("got %d %s", a.status, a.body)
			}
			// Generous bound for a shared, -race machine: the point is "not minutes".
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
	if up.calls.Load() != 0 {
		t.Error("a hostile request reached the backend")
	}
}

func TestCounterKeyPerUser(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	s := twoBackends(up, up)
	s.limits = true
	s.mutate = func(c *config.Config) {
		c.Consumers[0].TPM = 100
		c.Consumers[0].CounterKey = config.CounterUser
	}
	g := newGateway(t, s)
	url := g.data.URL + "/v1/chat/completions"
	if a := do(t, "POST", url, keyA, chatWithMax(80), "x-user-id", "alice"); a.status != 200 {
		t.Fatalf("alice: %d", a.status)
	}
	if a := do(t, "POST", url, keyA, chatWithMax(90), "x-user-id", "alice"); a.status != 429 {
		t.Errorf("alice over her own window: %d", a.status)
	}
	if a := do(t, "POST", url, keyA, chatWithMax(90), "x-user-id", "bob"); a.status != 200 {
		t.Errorf("bob has his own window: %d %s", a.status, a.body)
	}
}

func TestTokenMetrics(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	g := limited(t, up, 100, 0)
	do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatWithMax(10))
	do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatWithMax(5000))
	a := do(t, "GET", g.admin.URL+"/metrics", "", "")
	for _, want := range []string{
		`llmgate_tokens_total{consumer="team-a",kind="prompt",route="gpt-4o"} 5`,
		`llmgate_tokens_total{consumer="team-a",kind="completion",route="gpt-4o"} 3`,
		`llmgate_limit_rejections_total{reason="too_large"} 1`,
	} {
		if !strings.Contains(string(a.body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestBackendCapacitySteers(t *testing.T) {
	// primary and secondary share gpt-4o-mini's one group; primary's own TPM
	// is tiny, so once this node sent it that much, the secondary goes first.
	primary, secondary := newUpstream(t, okChat("primary")), newUpstream(t, okChat("secondary"))
	s := twoBackends(primary, secondary)
	s.backends[0].TPM = 150
	g := newGateway(t, s)
	body := `{"model":"gpt-4o-mini","max_tokens":100,"messages":[{"role":"user","content":"hello"}]}`
	served := map[string]int{}
	for range 6 {
		a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, body)
		served[a.header.Get("x-llmgate-backend")]++
	}
	if served["primary"] != 1 || served["secondary"] != 5 {
		t.Errorf("served = %v, want primary once (its 150 TPM holds one 108-token request)", served)
	}
}

func TestHugePromptIsRefusedBeforeCounting(t *testing.T) {
	noLeaks(t)
	up := newUpstream(t, okChat("east"))
	g := limited(t, up, 20000, 0)
	a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, hugePrompt(4_000_000))
	if a.status != http.StatusTooManyRequests || !strings.Contains(string(a.body), "by its length alone") || up.calls.Load() != 0 {
		t.Fatalf("a 4 MB prompt under 20000 TPM: %d %.300s", a.status, a.body)
	}
}

func TestHugePromptIsRefusedBeforeDecoding(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	g := limited(t, up, 20000, 0)
	url := g.data.URL + "/v1/chat/completions"
	// A key repeated after the text is a 400 once decoded: the 429 shows the
	// refusal came from the length pass, before the decoder.
	body := strings.TrimSuffix(hugePrompt(4_000_000), "}") + `,"stream":false,"stream":true}`
	a := do(t, "POST", url, keyA, body)
	if a.status != http.StatusTooManyRequests || a.header.Get("x-should-retry") != "false" || !strings.Contains(string(a.body), "by its length alone") {
		t.Fatalf("a 4 MB prompt under 20000 TPM: %d %.300s", a.status, a.body)
	}
	want := `llmgate_requests_total{backend="",code="429",op="chat",route="gpt-4o"} 1`
	if m := do(t, "GET", g.admin.URL+"/metrics", "", ""); !strings.Contains(string(m.body), want) {
		t.Errorf("the refusal is not counted under its route: want %s", want)
	}
	// 4 MB of base64 beside a short question is an image, not a prompt.
	image := `{"model":"gpt-4o","max_tokens":50,"messages":[{"role":"user","content":[{"type":"text","text":"What is in this image?"},` +
		`{"type":"image_url","image_url":{"url":"data:image/png;base64,` + strings.Repeat("iVBORw0KGgo", 360_000) + `"}}]}]}`
	if a := do(t, "POST", url, keyA, image); a.status != http.StatusOK || up.calls.Load() != 1 {
		t.Fatalf("a 4 MB image with a short question: %d %.300s", a.status, a.body)
	}
	// Another consumer without a TPM limit is never refused by length.
	if a := do(t, "POST", url, keyB, hugePrompt(4_000_000)); a.status != http.StatusOK {
		t.Fatalf("a 4 MB prompt without a limit: %d %.300s", a.status, a.body)
	}
}

func hugePrompt(n int) string {
	return `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("a", n) + `"}]}`
}

// BenchmarkHugePromptRefusal is one 4 MB one-word prompt, sent over loopback
// and refused under a 20000 TPM limit (target: under 50 ms).
func BenchmarkHugePromptRefusal(b *testing.B) {
	up := newUpstream(&testing.T{}, okChat("east"))
	defer up.Close()
	g := limited(&testing.T{}, up, 20000, 0)
	defer g.data.Close()
	body := hugePrompt(4_000_000)
	for b.Loop() {
		req, _ := http.NewRequest("POST", g.data.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("api-key", keyA)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkBesideHugePrompts is another consumer's small chat request, alone
// and while four clients keep sending 4 MB one-word prompts that are refused
// by their length (team-a, 20000 TPM); the small requests' median latency is
// reported as p50-ms (and p90-ms). Compare the two sub-benchmarks of one run.
func BenchmarkBesideHugePrompts(b *testing.B) {
	for _, senders := range []int{0, 4} {
		b.Run(fmt.Sprintf("huge-senders=%d", senders), func(b *testing.B) {
			up := newUpstream(&testing.T{}, okChat("east"))
			defer up.Close()
			g := limited(&testing.T{}, up, 20000, 0)
			defer g.data.Close()
			url := g.data.URL + "/v1/chat/completions"
			send := func(key, body string) (int, error) {
				req, _ := http.NewRequest("POST", url, strings.NewReader(body))
				req.Header.Set("api-key", key)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return 0, err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode, nil
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var refused atomic.Int64
			huge := hugePrompt(4_000_000)
			for range senders {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						if code, err := send(keyA, huge); err == nil && code == http.StatusTooManyRequests {
							refused.Add(1)
						}
					}
				})
			}
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				if code, err := send(keyB, chatBody); err != nil || code != http.StatusOK {
					b.Fatalf("small request: %d %v", code, err)
				}
				lat = append(lat, time.Since(start))
			}
			close(stop)
			wg.Wait()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds())/1000, "p90-ms")
			b.ReportMetric(float64(refused.Load()), "huge-refused")
		})
	}
}

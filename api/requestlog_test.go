package api

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/telemetry"
)

// lineBuffer collects log output; the handler writes from request goroutines.
type lineBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// waitLines waits until n lines were written and returns them decoded.
func (b *lineBuffer) waitLines(t *testing.T, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		text := b.buf.String()
		b.mu.Unlock()
		lines := strings.Split(strings.TrimSpace(text), "\n")
		if text != "" && len(lines) >= n {
			out := make([]map[string]any, len(lines))
			for i, l := range lines {
				if err := json.Unmarshal([]byte(l), &out[i]); err != nil {
					t.Fatalf("log line %d is not JSON: %v: %s", i, err, l)
				}
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d request log lines, have: %s", n, text)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// requestLogFields are the fields of SPEC §13, present on every line.
var requestLogFields = []string{"time", "request_id", "consumer", "user", "route", "op", "backend", "status",
	"prompt_tokens", "completion_tokens", "cache", "cache_distance", "duration_ms", "upstream_ms", "refusal"}

func TestRequestLogOneLinePerOutcome(t *testing.T) {
	type want struct {
		status   float64
		refusal  string
		cache    string
		consumer string
		backend  string
		tokens   bool // prompt and completion tokens recorded
		aborted  string
	}
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	tests := []struct {
		name     string
		upstream http.HandlerFunc
		limits   func(*config.Consumer)
		// send makes the request(s); only the last one's line is checked.
		send func(t *testing.T, g *gateway) int
		want want
	}{
		{name: "success is logged with its usage", upstream: okChat("east"),
			send: func(t *testing.T, g *gateway) int {
				do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody, "x-user-id", "alice")
				return 1
			},
			want: want{status: 200, cache: "miss", consumer: "team-a", backend: "primary", tokens: true}},
		{name: "cache hit is logged with its distance", upstream: okChat("east"),
			send: func(t *testing.T, g *gateway) int {
				do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody)
				do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody)
				return 2
			},
			want: want{status: 200, cache: "hit", consumer: "team-a"}},
		{name: "unknown key is a 401 refusal", upstream: okChat("east"),
			send: func(t *testing.T, g *gateway) int {
				do(t, "POST", g.data.URL+"/v1/chat/completions", "sk-wrong-secret", chatBody)
				return 1
			},
			want: want{status: 401, refusal: "invalid_api_key", cache: "off"}},
		{name: "unknown route is a 404 refusal", upstream: okChat("east"),
			send: func(t *testing.T, g *gateway) int {
				do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`)
				return 1
			},
			want: want{status: 404, refusal: "model_not_found", cache: "off", consumer: "team-a"}},
		{name: "TPM exceeded is a 429 refusal", upstream: okChat("east"),
			limits: func(c *config.Consumer) { c.TPM = 50 },
			send: func(t *testing.T, g *gateway) int {
				do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatWithMax(500))
				return 1
			},
			want: want{status: 429, refusal: "rate_limit_exceeded", cache: "miss", consumer: "team-a"}},
		{name: "quota exhausted is a 403 refusal", upstream: okChat("east"),
			limits: func(c *config.Consumer) { c.Quota = config.Quota{Tokens: 20, Period: "daily"} },
			send: func(t *testing.T, g *gateway) int {
				do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatWithMax(5), "x-llmgate-cache", "off")
				do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatWithMax(5), "x-llmgate-cache", "off")
				return 2
			},
			want: want{status: 403, refusal: "quota_exceeded", cache: "off", consumer: "team-a"}},
		{name: "no backend is a 503", upstream: status(500),
			send: func(t *testing.T, g *gateway) int {
				do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody)
				return 1
			},
			want: want{status: 503, refusal: "backend_unavailable", cache: "miss", consumer: "team-a"}},
		{name: "client abort is logged", upstream: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			_, _ = w.Write([]byte(`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}` + "\n\n"))
			w.(http.Flusher).Flush()
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		},
			send: func(t *testing.T, g *gateway) int {
				ctx, cancel := context.WithCancel(context.Background())
				req, _ := http.NewRequestWithContext(ctx, "POST", g.data.URL+"/v1/chat/completions",
					strings.NewReader(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hello"}]}`))
				req.Header.Set("api-key", keyA)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 16)
				_, _ = resp.Body.Read(buf) // the stream started
				cancel()
				resp.Body.Close()
				return 1
			},
			// The status is what the client was sent before it left.
			want: want{status: 200, cache: "miss", consumer: "team-a", backend: "primary", aborted: "client"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, tt.upstream)
			var out lineBuffer
			s := twoBackends(up, up)
			s.cache = true
			s.observer = telemetry.NewRequestLog(slog.New(slog.NewJSONHandler(&out, nil)), 0)
			if tt.limits != nil {
				s.limits = true
				s.mutate = func(c *config.Config) { tt.limits(&c.Consumers[0]) }
			}
			g := newGateway(t, s)
			n := tt.send(t, g)
			lines := out.waitLines(t, n)
			if len(lines) != n {
				t.Fatalf("%d requests wrote %d lines", n, len(lines))
			}
			l := lines[n-1]
			for _, f := range requestLogFields {
				if _, ok := l[f]; !ok {
					t.Errorf("field %q missing: %v", f, l)
				}
			}
			if l["msg"] != "request" || l["level"] != "INFO" {
				t.Errorf("msg/level = %v/%v, want request/INFO", l["msg"], l["level"])
			}
			if d, ok := l["duration_ms"].(float64); !ok || d <= 0 {
				t.Errorf("duration_ms = %#v, want a positive number", l["duration_ms"])
			}
			if _, ok := l["upstream_ms"].(float64); !ok {
				t.Errorf("upstream_ms = %#v, want a number", l["upstream_ms"])
			}
			w := tt.want
			if l["status"] != w.status || l["refusal"] != w.refusal || l["cache"] != w.cache || l["consumer"] != w.consumer || l["backend"] != w.backend {
				t.Errorf("status/refusal/cache/consumer/backend = %v/%v/%v/%v/%v, want %v/%q/%q/%q/%q",
					l["status"], l["refusal"], l["cache"], l["consumer"], l["backend"], w.status, w.refusal, w.cache, w.consumer, w.backend)
			}
			if w.aborted != "" && l["aborted"] != w.aborted {
				t.Errorf("aborted = %v, want %q", l["aborted"], w.aborted)
			}
			if w.tokens && (l["prompt_tokens"] != 5.0 || l["completion_tokens"] != 3.0) {
				t.Errorf("tokens = %v/%v, want the reply's usage 5/3", l["prompt_tokens"], l["completion_tokens"])
			}
			if w.cache == "hit" && l["cache_distance"] != 0.0 {
				t.Errorf("cache_distance = %v, want 0 for an exact hit", l["cache_distance"])
			}
			if w.cache != "hit" && l["cache_distance"] != nil {
				t.Errorf("cache_distance = %v, want null when nothing was hit", l["cache_distance"])
			}
			if l["request_id"] == "" || l["op"] != "chat" || l["route"] == "" && w.status != 401 {
				t.Errorf("request_id/op/route = %v/%v/%v", l["request_id"], l["op"], l["route"])
			}
			if tt.name == "success is logged with its usage" && l["user"] != "alice" {
				t.Errorf("user = %v, want alice from x-user-id", l["user"])
			}
			raw, _ := json.Marshal(lines)
			for _, secret := range []string{keyA, "sk-wrong-secret", "upstream-key-1", "upstream-key-2"} {
				if bytes.Contains(raw, []byte(secret)) {
					t.Errorf("a credential (%s) is in the request log", secret)
				}
			}
		})
	}
}

func TestRequestLogCapturesCappedContent(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	var out lineBuffer
	s := twoBackends(up, up)
	s.observer = telemetry.NewRequestLog(slog.New(slog.NewJSONHandler(&out, nil)), 32)
	s.capture = true
	g := newGateway(t, s)
	do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody, "Authorization", "Bearer "+keyA)
	l := out.waitLines(t, 1)[0]
	p, _ := l["prompt"].(string)
	c, _ := l["completion"].(string)
	if !strings.HasPrefix(p, `{"model":"gpt-4o"`) || len(p) > 32+len("…") {
		t.Errorf("prompt = %q, want the body cut to 32 bytes", p)
	}
	if !strings.HasPrefix(c, `{"id":"chatcmpl-1"`) || len(c) > 32+len("…") {
		t.Errorf("completion = %q, want the answer cut to 32 bytes", c)
	}
	if raw, _ := json.Marshal(l); bytes.Contains(raw, []byte(keyA)) {
		t.Error("the key is in the captured line")
	}
}

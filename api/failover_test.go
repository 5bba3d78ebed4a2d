package api

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
)

func TestFailover(t *testing.T) {
	tests := []struct {
		name    string
		primary http.HandlerFunc
	}{
		{"500", status(500)},
		{"502", status(502)},
		{"429 with retry-after-ms", status(429, "retry-after-ms", "30000")},
		{"503 with Retry-After", status(503, "Retry-After", "30")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			noLeaks(t)
			east := newUpstream(t, tc.primary)
			west := newUpstream(t, okChat("west"))
			g := newGateway(t, twoBackends(east, west))
			a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody)
			if a.status != 200 || a.header.Get("x-llmgate-backend") != "secondary" {
				t.Fatalf("want the secondary to serve: %d %v %s", a.status, a.header.Get("x-llmgate-backend"), a.body)
			}
			if !strings.Contains(string(a.body), "hello from west") {
				t.Fatalf("body %s", a.body)
			}
			if got := west.lastReq.Load(); got.path != "/v1/chat/completions" || !strings.Contains(string(got.body), `"model":"gpt-4o"`) {
				t.Fatalf("the openai-kind secondary got %s %s", got.path, got.body)
			}
		})
	}
}

func TestThrottledBackendIsSkippedUntilItsHint(t *testing.T) {
	east := newUpstream(t, status(429, "retry-after-ms", "60000"))
	west := newUpstream(t, okChat("west"))
	g := newGateway(t, twoBackends(east, west))
	for range 5 {
		if a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody); a.status != 200 {
			t.Fatalf("status %d", a.status)
		}
	}
	if n := east.calls.Load(); n != 1 {
		t.Fatalf("a backend that asked for 60s of rest was called %d times, want 1", n)
	}
	a := do(t, "GET", g.admin.URL+"/metrics", "", "")
	if !strings.Contains(string(a.body), `llmgate_backend_up{backend="primary"} 0`) ||
		!strings.Contains(string(a.body), `llmgate_backend_up{backend="secondary"} 1`) {
		t.Fatalf("backend health not on /metrics:\n%s", grep(string(a.body), "llmgate_backend_up"))
	}
}

func TestConnectErrorFailsOver(t *testing.T) {
	east := newUpstream(t, okChat("east"))
	west := newUpstream(t, okChat("west"))
	east.Close() // connection refused from now on
	g := newGateway(t, twoBackends(east, west))
	a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody)
	if a.status != 200 || a.header.Get("x-llmgate-backend") != "secondary" {
		t.Fatalf("%d %s", a.status, a.body)
	}
}

func TestAllBackendsDown(t *testing.T) {
	noLeaks(t)
	east := newUpstream(t, status(500))
	west := newUpstream(t, status(429, "retry-after-ms", "2500"))
	g := newGateway(t, twoBackends(east, west))
	a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody)
	if a.status != 503 || a.errorCode(t) != "backend_unavailable" {
		t.Fatalf("want 503 backend_unavailable, got %d %s", a.status, a.body)
	}
	if a.header.Get("Retry-After") != "3" {
		t.Fatalf("Retry-After %q, want 3 (2.5s rounded up)", a.header.Get("Retry-After"))
	}
	// The secondary is resting: the next request does not hammer it.
	before := west.calls.Load()
	a = do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody)
	if a.status != 503 || west.calls.Load() != before {
		t.Fatalf("second request: %d, secondary calls %d -> %d", a.status, before, west.calls.Load())
	}
}

func TestSpreadWithinGroup(t *testing.T) {
	east := newUpstream(t, okChat("east"))
	west := newUpstream(t, okChat("west"))
	g := newGateway(t, twoBackends(east, west))
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}]}`
	for range 20 {
		if a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, body); a.status != 200 {
			t.Fatal(a.status)
		}
	}
	if e, w := east.calls.Load(), west.calls.Load(); e != 10 || w != 10 {
		t.Fatalf("one group of two must share evenly: %d/%d", e, w)
	}
}

func TestHangingBackend(t *testing.T) {
	noLeaks(t)
	hang := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	east := newUpstream(t, hang)
	west := newUpstream(t, okChat("west"))
	s := twoBackends(east, west)
	s.mutate = func(c *config.Config) { c.Upstream.ResponseHeaderTimeout = 200 * time.Millisecond }
	g := newGateway(t, s)
	start := time.Now()
	a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody)
	if a.status != 200 || a.header.Get("x-llmgate-backend") != "secondary" {
		t.Fatalf("a hanging primary must fail over: %d %s", a.status, a.body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("failover took %v", d)
	}
	// Only hanging backends: a timely 503, not a hung client.
	west.set(hang)
	a = do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody)
	if a.status != 503 || a.errorCode(t) != "backend_unavailable" {
		t.Fatalf("all hanging: %d %s", a.status, a.body)
	}
}

func TestOverallDeadline(t *testing.T) {
	// A backend that sends headers, then nothing: the overall deadline ends it.
	east := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	s := twoBackends(east, east)
	s.mutate = func(c *config.Config) { c.Upstream.Timeout = 300 * time.Millisecond }
	g := newGateway(t, s)
	a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody)
	if a.status != 503 || a.errorCode(t) != "backend_unavailable" {
		t.Fatalf("want 503 backend_unavailable, got %d %s", a.status, a.body)
	}
}

// sseUpstream streams the events it is fed, one at a time, flushing each.
func sseUpstream(events <-chan string, closeConn bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					if closeConn {
						conn, _, err := http.NewResponseController(w).Hijack()
						if err == nil {
							conn.Close()
						}
					}
					return
				}
				_, _ = io.WriteString(w, ev)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	}
}

const streamBody = `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hello"}]}`

func openStream(t *testing.T, ctx context.Context, url string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/chat/completions", strings.NewReader(streamBody))
	req.Header.Set("api-key", keyA)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream answer %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp, bufio.NewReader(resp.Body)
}

func readEvent(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	var ev strings.Builder
	for {
		line, err := r.ReadString('\n')
		ev.WriteString(line)
		if err != nil {
			return ev.String()
		}
		if line == "\n" {
			return ev.String()
		}
	}
}

func TestStreamIsRelayedEventByEvent(t *testing.T) {
	noLeaks(t)
	events := make(chan string)
	east := newUpstream(t, sseUpstream(events, false))
	g := newGateway(t, twoBackends(east, east))
	resp, r := openStream(t, context.Background(), g.data.URL)
	defer resp.Body.Close()
	if resp.Header.Get("x-llmgate-backend") != "primary" {
		t.Fatalf("backend header %q", resp.Header.Get("x-llmgate-backend"))
	}
	chunks := []string{
		"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n",
		"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
		"data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
		"data: [DONE]\n\n",
	}
	for _, c := range chunks {
		// The upstream sends the next event only after the client has seen the
		// previous one: this deadlocks unless each event is flushed on arrival.
		select {
		case events <- c:
		case <-time.After(5 * time.Second):
			t.Fatal("upstream blocked")
		}
		if got := readEvent(t, r); got != c {
			t.Fatalf("client got %q, want %q (byte for byte)", got, c)
		}
	}
	close(events)
	if rest, _ := io.ReadAll(r); len(rest) != 0 {
		t.Fatalf("trailing bytes after [DONE]: %q", rest)
	}
}

func TestStreamBackendClosesMidStream(t *testing.T) {
	noLeaks(t)
	events := make(chan string, 2)
	events <- "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n"
	events <- "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n"
	close(events)
	east := newUpstream(t, sseUpstream(events, true))
	g := newGateway(t, twoBackends(east, east))
	resp, r := openStream(t, context.Background(), g.data.URL)
	defer resp.Body.Close()
	all, _ := io.ReadAll(r)
	s := string(all)
	if !strings.Contains(s, `"Hel"`) || !strings.Contains(s, `"lo"`) {
		t.Fatalf("events before the break must arrive: %q", s)
	}
	if strings.Contains(s, "[DONE]") || !strings.Contains(s, `"code":"stream_interrupted"`) {
		t.Fatalf("a broken stream must end with an error event and no [DONE]: %q", s)
	}
	// The node keeps serving.
	east.set(okChat("east"))
	if a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody); a.status != 200 {
		t.Fatalf("after a broken stream: %d", a.status)
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	noLeaks(t)
	events := make(chan string, 1)
	upstreamDone := make(chan struct{})
	east := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		defer close(upstreamDone)
		sseUpstream(events, false)(w, r)
	})
	g := newGateway(t, twoBackends(east, east))
	ctx, cancel := context.WithCancel(context.Background())
	resp, r := openStream(t, ctx, g.data.URL)
	events <- "data: {\"choices\":[]}\n\n"
	readEvent(t, r)
	cancel()
	resp.Body.Close()
	select {
	case <-upstreamDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream call outlived the client by 5s")
	}
	// The relay notices the cancellation on its own goroutine: give it a moment.
	deadline := time.Now().Add(3 * time.Second)
	for {
		a := do(t, "GET", g.admin.URL+"/metrics", "", "")
		if strings.Contains(string(a.body), `llmgate_streams_aborted_total{by="client"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client abort not counted:\n%s", grep(string(a.body), "aborted"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestBodyCutShortFailsOver(t *testing.T) {
	noLeaks(t)
	east := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "500")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, `{"id":"chatcmpl-1","choi`)
		w.(http.Flusher).Flush()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	})
	west := newUpstream(t, okChat("west"))
	g := newGateway(t, twoBackends(east, west))
	a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody)
	if a.status != 200 || a.header.Get("x-llmgate-backend") != "secondary" || !strings.Contains(string(a.body), "hello from west") {
		t.Fatalf("a body cut short must be retried on the next backend: %d %s", a.status, a.body)
	}
}

func TestHugeRetryAfterIsCapped(t *testing.T) {
	noLeaks(t)
	east := newUpstream(t, status(429, "Retry-After", "999999999"))
	s := twoBackends(east, east)
	s.mutate = func(c *config.Config) { c.Upstream.MaxRetryAfter = 2 * time.Second }
	g := newGateway(t, s)
	a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody)
	if a.status != 503 || a.header.Get("Retry-After") != "2" {
		t.Fatalf("a 31-year Retry-After behind a 2s cap: %d, Retry-After %q", a.status, a.header.Get("Retry-After"))
	}
	east.set(okChat("east"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody); a.status == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the backend never came back after the capped rest")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

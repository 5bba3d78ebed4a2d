package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
)

// tpmUsed reads team-a's tokens in the window from the admin API.
func tpmUsed(t *testing.T, g *gateway) int64 {
	t.Helper()
	a := do(t, "GET", g.admin.URL+"/admin/quota/team-a", "", "")
	var q struct {
		Used int64 `json:"tpm_used"`
	}
	if a.status != 200 || json.Unmarshal(a.body, &q) != nil {
		t.Fatalf("admin quota: %d %s", a.status, a.body)
	}
	return q.Used
}

// settledTo waits until team-a's window holds something other than the
// reservation and returns it.
func settledTo(t *testing.T, g *gateway, reservation int64) int64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if used := tpmUsed(t, g); used != reservation {
			return used
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reservation of %d was never settled", reservation)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// promptEstimate is what the gateway estimates chatWithMax's prompt at: the
// charge of an answer whose usage is zero (which must not be 0: the backend
// was sent the prompt).
func promptEstimate(t *testing.T) int64 {
	t.Helper()
	up := newUpstream(t, chatWithUsage(`{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}`))
	g := limited(t, up, 1_000_000, 0)
	a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatWithMax(500))
	n, err := strconv.ParseInt(a.header.Get("x-llmgate-tokens-consumed"), 10, 64)
	if a.status != 200 || err != nil || n <= 0 {
		t.Fatalf("a zero-usage answer: %d, charged %q", a.status, a.header.Get("x-llmgate-tokens-consumed"))
	}
	return n
}

func chatWithUsage(usage string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":`+usage+`}`)
	}
}

func TestCancelledBeforeFirstByteIsChargedThePrompt(t *testing.T) {
	noLeaks(t)
	prompt := promptEstimate(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		cancel() // the backend has the request: now the client gives up
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	g := limited(t, up, 1_000_000, 0)
	req, _ := http.NewRequestWithContext(ctx, "POST", g.data.URL+"/v1/chat/completions", strings.NewReader(chatWithMax(500)))
	req.Header.Set("api-key", keyA)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("the request was answered before the client gave up")
	}
	if used := settledTo(t, g, prompt+500); used != prompt {
		t.Fatalf("a request abandoned after reaching the backend is charged %d, want its prompt estimate %d", used, prompt)
	}
	if up.calls.Load() != 1 {
		t.Fatalf("backend calls %d", up.calls.Load())
	}
}

func TestUnusableUsageSettlesToTheEstimate(t *testing.T) {
	noLeaks(t)
	prompt := promptEstimate(t)
	for name, h := range map[string]http.HandlerFunc{
		"200 that is not JSON": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"choices":[`)
		},
		"usage overflowing int64": chatWithUsage(`{"prompt_tokens":1e30,"completion_tokens":1,"total_tokens":1e30}`),
		"negative usage":          chatWithUsage(`{"prompt_tokens":-100000,"completion_tokens":-5,"total_tokens":-100005}`),
		"usage beyond any limit":  chatWithUsage(`{"prompt_tokens":9000000000000000,"completion_tokens":1,"total_tokens":9000000000000001}`),
	} {
		t.Run(name, func(t *testing.T) {
			up := newUpstream(t, h)
			g := limited(t, up, 1_000_000, 0)
			a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatWithMax(500))
			want := strconv.FormatInt(prompt+500, 10)
			if a.status != 200 || a.header.Get("x-llmgate-tokens-consumed") != want {
				t.Fatalf("%d, charged %q, want the estimate %s", a.status, a.header.Get("x-llmgate-tokens-consumed"), want)
			}
		})
	}
}

func TestNeverReadingStreamClientIsDropped(t *testing.T) {
	noLeaks(t)
	prompt := promptEstimate(t)
	stopped := make(chan struct{})
	pad := strings.Repeat("x", 1024)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		defer close(stopped)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for { // an endless answer, 1 KB an event
			if _, err := io.WriteString(w, `data: {"id":"c","choices":[{"index":0,"delta":{"content":"a"}}],"pad":"`+pad+"\"}\n\n"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			if r.Context().Err() != nil {
				return
			}
		}
	})
	s := twoBackends(up, up)
	s.limits = true
	s.mutate = func(c *config.Config) {
		c.Consumers[0].TPM = 10_000_000
		c.Server.StreamWriteTimeout = 300 * time.Millisecond
	}
	g := newGateway(t, s)
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.data.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	body := `{"model":"gpt-4o","stream":true,"max_tokens":5000000,"messages":[{"role":"user","content":"hello"}]}`
	_, _ = io.WriteString(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\napi-key: "+keyA+"\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := http.ReadResponse(br, nil); err != nil { // the head only; then never read again
		t.Fatal(err)
	}
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("a client that reads nothing still holds the stream after 20s (stream_write_timeout 300ms)")
	}
	used := settledTo(t, g, 5_000_000+prompt)
	if used <= 0 || used >= 5_000_000 {
		t.Fatalf("after the drop the window holds %d: the reservation was not settled to the streamed text", used)
	}
	m := do(t, "GET", g.admin.URL+"/metrics", "", "")
	if !strings.Contains(string(m.body), `llmgate_streams_aborted_total{by="client"} 1`) {
		t.Fatalf("the drop is not counted:\n%s", grep(string(m.body), "aborted"))
	}
}

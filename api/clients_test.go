package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestStreamCompleteAtDone: a client that closes its connection right
// after [DONE] (as openai-go does) got a complete stream, even when the
// backend ends its body later: it is cached and not counted as aborted.
func TestStreamCompleteAtDone(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, c := range []string{
			`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}]}`,
			`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}`,
			`[DONE]`,
		} {
			_, _ = io.WriteString(w, "data: "+c+"\n\n")
		}
		w.(http.Flusher).Flush()
		select { // the body ends a while after [DONE]
		case <-time.After(10 * time.Second):
		case <-r.Context().Done():
		}
	})
	g := cached(t, up)
	url := g.data.URL + "/v1/chat/completions"
	body := `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"say hi at once"}]}`

	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("api-key", keyA)
	tr := &http.Transport{}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && sc.Text() != "data: [DONE]" {
	}
	resp.Body.Close() // gone at once, as the SDK is
	tr.CloseIdleConnections()

	deadline := time.Now().Add(3 * time.Second)
	for {
		a := do(t, "POST", url, keyA, body)
		if a.header.Get("x-llmgate-cache") == "hit" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a stream closed by the client after [DONE] was not cached (cache %q)", a.header.Get("x-llmgate-cache"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	metrics := string(do(t, "GET", g.admin.URL+"/metrics", "", "").body)
	if strings.Contains(metrics, `llmgate_streams_aborted_total{by="client"}`) || strings.Contains(metrics, `code="499"`) {
		t.Errorf("counted as aborted:\n%s", grep(metrics, "abort"))
	}
}

// TestRefusalsThatCannotSucceed carry x-should-retry: false, and the
// message names the default allowance when the client set no limit.
func TestRefusalsThatCannotSucceed(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	g := limited(t, up, 500, 0) // default allowance 1024 > 500
	a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody)
	if a.status != http.StatusTooManyRequests || a.header.Get("x-should-retry") != "false" {
		t.Fatalf("too large: %d x-should-retry=%q %s", a.status, a.header.Get("x-should-retry"), a.body)
	}
	if !bytes.Contains(a.body, []byte("default completion allowance of 1024")) || bytes.Contains(a.body, []byte("plus max_tokens")) {
		t.Errorf("the message must name the default allowance, not max_tokens: %s", a.body)
	}
	if a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatWithMax(10)); a.status != 200 || a.header.Get("x-should-retry") != "" {
		t.Errorf("a fitting request: %d %v", a.status, a.header)
	}

	q := limited(t, up, 0, 20)
	do(t, "POST", q.data.URL+"/v1/chat/completions", keyA, chatWithMax(5))
	a = do(t, "POST", q.data.URL+"/v1/chat/completions", keyA, chatWithMax(5))
	if a.status != http.StatusForbidden || a.header.Get("x-should-retry") != "false" || a.header.Get("Retry-After") == "" {
		t.Errorf("quota exhausted: %d %v", a.status, a.header)
	}
}

// TestEvery503HasRetryAfter: a backend failure that opens no breaker and
// gives no hint still tells the client when to come back.
func TestEvery503HasRetryAfter(t *testing.T) {
	east := newUpstream(t, status(500))
	g := newGateway(t, twoBackends(east, east))
	a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody)
	if a.status != 503 || a.header.Get("Retry-After") == "" {
		t.Fatalf("%d Retry-After=%q", a.status, a.header.Get("Retry-After"))
	}
}

// TestLimitHeadersOnEveryAnswer: the consumer's TPM headers also come with
// 400s, 404s and the model listing.
func TestLimitHeadersOnEveryAnswer(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	g := limited(t, up, 5000, 0)
	tests := []struct {
		name, method, path, body string
		status                   int
	}{
		{"bad JSON", "POST", "/v1/chat/completions", `{"model":`, 400},
		{"unknown model", "POST", "/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, 404},
		{"model list", "GET", "/v1/models", "", 200},
		{"one model", "GET", "/v1/models/gpt-4o", "", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, tc.method, g.data.URL+tc.path, keyA, tc.body)
			if a.status != tc.status {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			for _, h := range []string{"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-request-id", "x-llmgate-cache"} {
				if a.header.Get(h) == "" {
					t.Errorf("%s missing", h)
				}
			}
		})
	}
}

// TestUnlimitedShownAsUnlimited: a consumer without a TPM limit has no
// remaining count to run out of: null, not 0.
func TestUnlimitedShownAsUnlimited(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	g := limited(t, up, 0, 1000)
	a := do(t, "GET", g.admin.URL+"/admin/quota/team-a", "", "")
	var s map[string]json.RawMessage
	if err := json.Unmarshal(a.body, &s); err != nil {
		t.Fatal(err)
	}
	if string(s["tpm_limit"]) != "0" || string(s["tpm_remaining"]) != "null" {
		t.Errorf("tpm_limit %s, tpm_remaining %s; want 0 and null", s["tpm_limit"], s["tpm_remaining"])
	}
}

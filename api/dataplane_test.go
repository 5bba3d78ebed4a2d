package api

import (
	"net/http"
	"strings"
	"testing"
)

func TestRoutes(t *testing.T) {
	noLeaks(t)
	east := newUpstream(t, okChat("east"))
	west := newUpstream(t, okChat("west"))
	g := newGateway(t, twoBackends(east, west))

	tests := []struct {
		name, method, path, body string
		wantStatus               int
		wantBackend              string
		wantUpstreamPath         string
	}{
		{"openai chat", "POST", "/v1/chat/completions", chatBody, 200, "primary", "/openai/deployments/gpt-4o/chat/completions"},
		{"azure chat", "POST", "/openai/deployments/gpt-4o/chat/completions?api-version=2025-01-01", `{"messages":[{"role":"user","content":"hi"}]}`, 200, "primary", "/openai/deployments/gpt-4o/chat/completions"},
		{"openai embeddings", "POST", "/v1/embeddings", `{"model":"text-embedding-3-small","input":"hi"}`, 200, "primary", "/openai/deployments/text-embedding-3-small/embeddings"},
		{"azure embeddings", "POST", "/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21", `{"input":["a","b"]}`, 200, "primary", "/openai/deployments/text-embedding-3-small/embeddings"},
		{"models", "GET", "/v1/models", "", 200, "", ""},
		{"one model", "GET", "/v1/models/gpt-4o-mini", "", 200, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, tc.method, g.data.URL+tc.path, keyA, tc.body)
			if a.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", a.status, tc.wantStatus, a.body)
			}
			if a.header.Get("x-request-id") == "" {
				t.Error("no x-request-id")
			}
			if got := a.header.Get("x-llmgate-backend"); got != tc.wantBackend {
				t.Errorf("x-llmgate-backend %q, want %q", got, tc.wantBackend)
			}
			if tc.wantUpstreamPath != "" {
				if got := east.lastReq.Load().path; got != tc.wantUpstreamPath {
					t.Errorf("upstream path %s, want %s", got, tc.wantUpstreamPath)
				}
				if a.header.Get("x-llmgate-cache") != "off" {
					t.Errorf("x-llmgate-cache %q, want off", a.header.Get("x-llmgate-cache"))
				}
			}
		})
	}

	a := do(t, "GET", g.data.URL+"/v1/models", keyA, "")
	for _, m := range []string{"gpt-4o", "gpt-4o-mini", "text-embedding-3-small"} {
		if !strings.Contains(string(a.body), `"id":"`+m+`"`) {
			t.Errorf("/v1/models lacks %s: %s", m, a.body)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if a := do(t, "GET", g.data.URL+p, "", ""); a.status != 200 {
			t.Errorf("%s: %d", p, a.status)
		}
	}
	g.api.SetReady(false)
	if a := do(t, "GET", g.data.URL+"/readyz", "", ""); a.status != 503 {
		t.Errorf("/readyz while draining: %d, want 503", a.status)
	}
}

func TestRequestIDEchoed(t *testing.T) {
	east := newUpstream(t, okChat("east"))
	g := newGateway(t, twoBackends(east, east))
	a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody, "x-request-id", "trace-123")
	if got := a.header.Get("x-request-id"); got != "trace-123" {
		t.Fatalf("x-request-id %q, want the client's trace-123", got)
	}
	if got := east.lastReq.Load().header.Get("x-request-id"); got != "trace-123" {
		t.Fatalf("upstream saw x-request-id %q", got)
	}
	bad := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody, "x-request-id", strings.Repeat("x", 500))
	if got := bad.header.Get("x-request-id"); got == "" || len(got) > 128 {
		t.Fatalf("an oversized client id must be replaced, got %q", got)
	}
}

func TestConsumerKeyHeaders(t *testing.T) {
	east := newUpstream(t, okChat("east"))
	g := newGateway(t, twoBackends(east, east))
	url := g.data.URL + "/v1/chat/completions"
	for _, h := range [][2]string{{"api-key", keyA}, {"Authorization", "Bearer " + keyA}, {"Authorization", "bearer " + keyB}, {"Ocp-Apim-Subscription-Key", keyB}} {
		a := do(t, "POST", url, "", chatBody, h[0], h[1])
		if a.status != 200 {
			t.Errorf("key in %s: status %d: %s", h[0], a.status, a.body)
		}
		// The consumer's key never reaches the backend; the backend's own key does.
		r := east.lastReq.Load()
		for _, v := range []string{r.header.Get("api-key"), r.header.Get("Authorization"), r.header.Get("Ocp-Apim-Subscription-Key")} {
			if strings.Contains(v, keyA) || strings.Contains(v, keyB) {
				t.Fatalf("consumer key forwarded upstream: %q", v)
			}
		}
		if r.header.Get("api-key") != "upstream-key-1" {
			t.Fatalf("backend key not sent: %v", r.header)
		}
	}
	for _, tc := range []struct{ name, header, value string }{
		{"missing", "", ""},
		{"unknown", "api-key", "sk-nope"},
		{"wrong scheme", "Authorization", "Basic " + keyA},
	} {
		a := do(t, "POST", url, "", chatBody, tc.header, tc.value)
		if a.status != 401 || a.errorCode(t) != "invalid_api_key" {
			t.Errorf("%s key: %d %s, want 401 invalid_api_key", tc.name, a.status, a.body)
		}
	}
}

func TestBadInput(t *testing.T) {
	noLeaks(t)
	east := newUpstream(t, okChat("east"))
	g := newGateway(t, twoBackends(east, east))
	chat := "/v1/chat/completions"
	big := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("a", 50<<20) + `"}]}`
	tests := []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"malformed JSON", chat, `{"model":"gpt-4o","messages":[`, 400, "invalid_request_error"},
		{"wrong field type", chat, `{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"max_tokens":"ten"}`, 400, "invalid_request_error"},
		{"missing messages", chat, `{"model":"gpt-4o"}`, 400, "invalid_request_error"},
		{"missing model", chat, `{"messages":[{"role":"user","content":"x"}]}`, 400, "invalid_request_error"},
		{"invalid UTF-8", chat, "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\x28\"}]}", 400, "invalid_request_error"},
		{"negative max_tokens", chat, `{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"max_tokens":-1}`, 400, "invalid_request_error"},
		{"50 MB body", chat, big, 413, "request_too_large"},
		{"unknown model", chat, `{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}`, 404, "model_not_found"},
		{"unknown deployment", "/openai/deployments/gpt-9/chat/completions?api-version=2024-10-21", `{"messages":[{"role":"user","content":"x"}]}`, 404, "model_not_found"},
		{"embeddings without input", "/v1/embeddings", `{"model":"text-embedding-3-small"}`, 400, "invalid_request_error"},
		{"unknown path", "/v1/completions", `{}`, 404, "not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := east.calls.Load()
			a := do(t, "POST", g.data.URL+tc.path, keyA, tc.body)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %.300s", a.status, tc.status, a.body)
			}
			if code := a.errorCode(t); code != tc.code {
				t.Fatalf("code %q, want %q", code, tc.code)
			}
			if a.header.Get("x-request-id") == "" {
				t.Error("error answers carry x-request-id too")
			}
			if east.calls.Load() != before {
				t.Fatal("a bad request reached the backend")
			}
		})
	}
	// The node keeps serving others.
	if a := do(t, "POST", g.data.URL+chat, keyA, chatBody); a.status != 200 {
		t.Fatalf("after bad input: %d %s", a.status, a.body)
	}
	if a := do(t, "GET", g.data.URL+"/v1/chat/completions", keyA, ""); a.status != http.StatusMethodNotAllowed {
		t.Fatalf("GET on a POST route: %d", a.status)
	}
}

func TestBackendErrorPassedThrough(t *testing.T) {
	east := newUpstream(t, status(400, "x-ms-error", "content_filter"))
	west := newUpstream(t, okChat("west"))
	g := newGateway(t, twoBackends(east, west))
	a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody)
	if a.status != 400 || !strings.Contains(string(a.body), "from upstream") {
		t.Fatalf("a non-retryable backend error must reach the client as is: %d %s", a.status, a.body)
	}
	if west.calls.Load() != 0 {
		t.Fatal("a 400 must not be retried on another backend")
	}
	if a.header.Get("x-llmgate-backend") != "primary" || a.header.Get("x-ms-error") != "content_filter" {
		t.Fatalf("headers: %v", a.header)
	}
}

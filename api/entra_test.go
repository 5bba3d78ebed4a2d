package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/node"
)

// tokenSource is a backend's Entra ID token source whose answer a test sets.
type tokenSource struct {
	fail  atomic.Bool
	calls atomic.Int64
}

func (s *tokenSource) Token(context.Context) (string, error) {
	s.calls.Add(1)
	if s.fail.Load() {
		return "", errors.New("Microsoft Entra ID token for backend primary (client secret): ClientSecretCredential authentication failed. (AADSTS7000215) (HTTP 401)")
	}
	return "entra-access-token", nil
}

// TestEntraBackend: a backend with auth: entra gets the Entra token as a
// bearer token (no api-key) for chat, embeddings and the cache's embedder
// route; a failing token source is a 503 naming the backend.
func TestEntraBackend(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/embeddings") {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[1,0,0]}],"usage":{"prompt_tokens":2,"total_tokens":2}}`)
			return
		}
		okChat("primary")(w, r)
	})
	src := &tokenSource{}
	s := twoBackends(up, up)
	s.backends[0].APIKey = ""
	s.backends[0].Auth = config.BackendAuthEntra
	s.backends[0].Entra = config.Entra{TenantID: "t", ClientID: "c", ClientSecret: "never-sent-upstream"}
	s.tokens = map[string]node.TokenSource{"primary": src}
	s.cache = true
	s.mutate = func(c *config.Config) { c.Cache.Embedder = "text-embedding-3-small" }
	g := newGateway(t, s)

	for _, tc := range []struct{ name, path, body string }{
		{"chat", "/v1/chat/completions", chatBody},
		{"embeddings", "/v1/embeddings", `{"model":"text-embedding-3-small","input":"hello"}`},
	} {
		a := do(t, "POST", g.data.URL+tc.path, keyA, tc.body)
		if a.status != 200 {
			t.Fatalf("%s: %d %s", tc.name, a.status, a.body)
		}
		h := up.lastReq.Load().header
		if h.Get("Authorization") != "Bearer entra-access-token" || h.Get("api-key") != "" {
			t.Fatalf("%s: upstream got Authorization %q, api-key %q", tc.name, h.Get("Authorization"), h.Get("api-key"))
		}
	}
	// The chat above went through the cache, whose embedder is the route
	// served by the Entra backend: its embeddings call carried the token too.
	embedCalls := src.calls.Load()
	if embedCalls < 3 {
		t.Fatalf("%d token uses for chat, its embedding and an embeddings call", embedCalls)
	}

	src.fail.Store(true)
	a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, `{"model":"gpt-4o","messages":[{"role":"user","content":"a new question"}]}`, "x-llmgate-cache", "off")
	// gpt-4o fails over to the secondary (key auth), which serves.
	if a.status != 200 || a.header.Get("x-llmgate-backend") != "secondary" {
		t.Fatalf("token failure on the primary: %d %s", a.status, a.body)
	}
	a = do(t, "POST", g.data.URL+"/v1/embeddings", keyA, `{"model":"text-embedding-3-small","input":"hello"}`)
	if a.status != 503 || a.errorCode(t) != "backend_unavailable" || !strings.Contains(string(a.body), "primary") ||
		!strings.Contains(string(a.body), "Entra ID") || strings.Contains(string(a.body), "never-sent-upstream") {
		t.Fatalf("token failure with no other backend: %d %s", a.status, a.body)
	}
}

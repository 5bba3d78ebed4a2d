package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestServeReverseProxyForwardsAndStops(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Method+" "+r.URL.Path)
	}))
	defer upstream.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := newOutputWatcher()
	done := make(chan error, 1)
	go func() { done <- ServeReverseProxy(ctx, "127.0.0.1:0", upstream.URL, out) }()

	var addr string
	select {
	case line := <-out.first:
		var ok bool
		if addr, ok = strings.CutPrefix(line, "reverse-proxy listening on "); !ok {
			t.Fatalf("first line %q does not announce the address", line)
		}
	case err := <-done:
		t.Fatalf("proxy stopped before listening: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("proxy did not announce its address")
	}

	resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "POST /v1/chat/completions" {
		t.Errorf("through the proxy: %d %q, want 200 \"POST /v1/chat/completions\"", resp.StatusCode, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("proxy returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("proxy did not stop after cancel")
	}
}

func TestServeReverseProxyRejectsARelativeUpstream(t *testing.T) {
	if err := ServeReverseProxy(context.Background(), "127.0.0.1:0", "127.0.0.1:9000", io.Discard); err == nil {
		t.Error("an upstream without scheme was accepted")
	}
}

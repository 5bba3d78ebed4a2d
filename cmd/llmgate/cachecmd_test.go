package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/llmgate/llmgate/internal/mock"
)

func TestCacheCalibrate(t *testing.T) {
	dir := t.TempDir()
	pairs := filepath.Join(dir, "pairs.tsv")
	var b strings.Builder
	b.WriteString("a\tb\tlabel\n")
	for _, p := range [][3]string{
		{"How do I reverse a list in Python?", "how do I reverse a list in python", "1"},
		{"What is the capital of France?", "what is the capital of France", "1"},
		{"Explain the borrow checker in Rust", "explain the borrow checker in Rust.", "1"},
		{"How do I add a user to a group?", "How do I remove a user from a group?", "0"},
		{"print(7 + 3)", "print(7 - 3)", "0"},
		{"Write a poem about a mango tree", "Write a poem about a banana tree", "0"},
		{"Sort a list in Go", "sort a list in Go!", "1"},
		{"Is C++ hard?", "Is C# hard?", "0"},
	} {
		b.WriteString(p[0] + "\t" + p[1] + "\t" + p[2] + "\n")
	}
	if err := os.WriteFile(pairs, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "llmgate.yaml")
	if err := os.WriteFile(cfg, []byte("cache:\n  enabled: true\n  score_threshold: 0.5 # tuned\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"cache", "calibrate", "--pairs", pairs, "--config", cfg, "--target-precision", "0.99", "--write"}, &out, &errb)
	if err != nil {
		t.Fatalf("calibrate: %v\n%s%s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "held-out half") || !strings.Contains(out.String(), "wrote cache.score_threshold") {
		t.Fatalf("report lacks the held-out scores or the write:\n%s", out.String())
	}
	got, _ := os.ReadFile(cfg)
	if strings.Contains(string(got), "0.5 # tuned") || !strings.Contains(string(got), "# tuned") {
		t.Errorf("config not rewritten in place: %s", got)
	}
	for _, bad := range [][]string{
		{"cache", "calibrate", "--pairs", filepath.Join(dir, "absent.tsv")},
		{"cache", "calibrate", "--target-precision", "1.5"},
		{"cache", "calibrate", "--write"},
		{"cache", "frobnicate"},
	} {
		if err := run(t.Context(), bad, &out, &errb); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

// TestCacheCalibrateRouteEmbedder: with cache.embedder naming an embeddings
// route, calibrate embeds the pairs through that route's backend (here the
// mock upstream, which embeds with the local embedder, so the curve equals
// the local one), and a failing route is a clear error, not a calibration.
func TestCacheCalibrateRouteEmbedder(t *testing.T) {
	var embeds atomic.Int64
	var fail atomic.Bool
	m := mock.New(mock.Options{Name: "emb"})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/embeddings") {
			embeds.Add(1)
			if fail.Load() {
				http.Error(w, `{"error":{"message":"down","type":"server_error"}}`, http.StatusInternalServerError)
				return
			}
		}
		m.ServeHTTP(w, r)
	}))
	defer srv.Close()
	dir := t.TempDir()
	pairs := filepath.Join(dir, "pairs.tsv")
	if err := os.WriteFile(pairs, []byte("How do I reverse a list in Python?\thow do I reverse a list in python\t1\n"+
		"What is the capital of France?\twhat is the capital of France\t1\n"+
		"How do I add a user to a group?\tHow do I remove a user from a group?\t0\n"+
		"print(7 + 3)\tprint(7 - 3)\t0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "llmgate.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`backends:
  - {name: m, kind: openai, url: %s/v1, deployments: [text-embedding-3-small]}
routes:
  text-embedding-3-small: {pool: [[m]]}
cache:
  enabled: true
  embedder: text-embedding-3-small
  embed_timeout: 30s # a loaded test machine, not the request path
  score_threshold: 0.5
`, srv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	calibrate := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := run(t.Context(), append([]string{"cache", "calibrate", "--pairs", pairs}, args...), &out, &errb)
		return out.String() + errb.String(), err
	}
	viaRoute, err := calibrate("--config", cfg)
	if err != nil {
		t.Fatalf("calibrate through the route: %v\n%s", err, viaRoute)
	}
	if !strings.Contains(viaRoute, "embeddings route text-embedding-3-small") {
		t.Errorf("report does not name the route embedder:\n%s", viaRoute)
	}
	if n := embeds.Load(); n != 8 {
		t.Errorf("%d embeddings calls to the backend, want one per distinct text (8)", n)
	}
	local, err := calibrate()
	if err != nil {
		t.Fatal(err)
	}
	table := func(s string) string { _, after, _ := strings.Cut(s, "threshold\t"); return after }
	if !strings.Contains(local, "local embedder") || table(local) != table(viaRoute) {
		t.Errorf("the mock embeds like the local embedder, yet the curves differ:\nlocal:\n%s\nroute:\n%s", local, viaRoute)
	}
	fail.Store(true)
	if out, err := calibrate("--config", cfg); err == nil || !strings.Contains(err.Error(), "text-embedding-3-small") {
		t.Errorf("failing route: err %v, want an error naming the route\n%s", err, out)
	}
}

package api

import (
	"encoding/json"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
)

// TestVerdictsAreInternal: verified-matching verdicts ride on the cache's
// replication as records of an internal Space, but an operator's view of
// the cache (stats entries, listings, a purge of everything) leaves them
// alone; only a purge naming their route clears them.
func TestVerdictsAreInternal(t *testing.T) {
	var fail, judged atomic.Int32
	up := newUpstream(t, judgeUpstream(func(a, b string) string { return "Yes." }, &fail, &judged))
	g := cached(t, up, func(s *setup) {
		s.mutate = func(c *config.Config) {
			c.Cache.Verify = &config.CacheVerify{Route: "gpt-4o-mini", AuditRate: 1e-9}
		}
	})
	chat := g.data.URL + "/v1/chat/completions"
	do(t, "POST", chat, keyA, chatAbout("How do I rotate the API key of my Azure OpenAI resource?"))
	a := do(t, "POST", chat, keyA, chatAbout("How would I rotate the API key of my Azure OpenAI resource?"))
	if a.header.Get("x-llmgate-cache-tier") != "verified" || judged.Load() == 0 {
		t.Fatalf("setup: tier %q, judge calls %d; want a verified hit", a.header.Get("x-llmgate-cache-tier"), judged.Load())
	}
	type stats struct {
		Entries  int `json:"entries"`
		Internal int `json:"internal_entries"`
	}
	read := func() stats {
		var st stats
		if err := json.Unmarshal(do(t, "GET", g.admin.URL+"/admin/cache/stats", "", "").body, &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	deadline := time.Now().Add(5 * time.Second)
	for read().Internal == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"stats count verdicts apart from entries", func(t *testing.T) {
			if st := read(); st.Entries != 1 || st.Internal != 1 {
				t.Fatalf("stats %+v, want 1 entry and 1 internal record (the verdict)", st)
			}
		}},
		{"a listing of everything shows no verdict", func(t *testing.T) {
			b := string(do(t, "GET", g.admin.URL+"/admin/cache/entries", "", "").body)
			if strings.Contains(b, "·verify") || strings.Count(b, `"id"`) != 1 {
				t.Fatalf("listing %s: want the one answer and no verdict", b)
			}
		}},
		{"a purge of everything keeps the verdicts", func(t *testing.T) {
			b := strings.TrimSpace(string(do(t, "DELETE", g.admin.URL+"/admin/cache", "", "").body))
			if st := read(); b != `{"deleted":1}` || st.Entries != 0 || st.Internal != 1 {
				t.Fatalf("purge %s, then stats %+v; want deleted 1, 0 entries, 1 internal record", b, st)
			}
		}},
		{"a purge naming the verdict route clears them", func(t *testing.T) {
			b := strings.TrimSpace(string(do(t, "DELETE", g.admin.URL+"/admin/cache?route="+url.QueryEscape("·verify"), "", "").body))
			if st := read(); b != `{"deleted":1}` || st.Internal != 0 {
				t.Fatalf("purge %s, then stats %+v; want deleted 1, no internal record", b, st)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}
}

package api

import (
	"encoding/json"
	"testing"
	"time"
)

func TestAdminBackendsShowsAnOpenCircuit(t *testing.T) {
	east := newUpstream(t, status(429, "retry-after-ms", "60000"))
	west := newUpstream(t, okChat("west"))
	g := newGateway(t, twoBackends(east, west))
	before := time.Now()
	if a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody); a.status != 200 {
		t.Fatalf("status %d %s", a.status, a.body)
	}
	a := do(t, "GET", g.admin.URL+"/admin/backends", "", "")
	if a.status != 200 {
		t.Fatalf("status %d %s", a.status, a.body)
	}
	var out struct {
		Backends []struct {
			Name, Kind, State string
			OpenUntil         *time.Time `json:"open_until"`
			TPMRemaining      *int64     `json:"tpm_remaining"`
		}
	}
	if err := json.Unmarshal(a.body, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Backends) != 2 {
		t.Fatalf("want both backends: %s", a.body)
	}
	p, s := out.Backends[0], out.Backends[1]
	if p.Name != "primary" || p.State != "open" || p.OpenUntil == nil || p.OpenUntil.Before(before.Add(50*time.Second)) {
		t.Fatalf("the throttled primary should be open for about its 60s hint: %s", a.body)
	}
	if s.Name != "secondary" || s.State != "up" || s.OpenUntil != nil || s.Kind == "" {
		t.Fatalf("the secondary should be up: %s", a.body)
	}
}

package node

import (
	"net/http"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
)

func TestBackendsReportCircuitAndHeadroom(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	up := config.Upstream{BreakerFailures: 2, BreakerCooldown: 10 * time.Second}
	tests := []struct {
		name      string
		tpm       int64
		act       func(b *backend)
		at        time.Duration // after t0
		state     string
		openUntil time.Duration // after t0; 0 = none
		remaining int64         // -1 = unknown
	}{
		{"a fresh backend is up, headroom unknown", 0, func(*backend) {}, 0, "up", 0, -1},
		{"failures below the threshold keep it up", 0, func(b *backend) { b.breaker.failure(t0) }, 0, "up", 0, -1},
		{"failures at the threshold open it for the cooldown", 0, func(b *backend) { b.breaker.failure(t0); b.breaker.failure(t0) }, time.Second, "open", 10 * time.Second, -1},
		{"past the cooldown it is half open", 0, func(b *backend) { b.breaker.failure(t0); b.breaker.failure(t0) }, 11 * time.Second, "half_open", 0, -1},
		{"a success after the opening closes it", 0, func(b *backend) {
			b.breaker.failure(t0)
			b.breaker.failure(t0)
			b.breaker.success()
		}, 11 * time.Second, "up", 0, -1},
		{"a retry hint opens it until the hint", 0, func(b *backend) { b.breaker.throttled(t0, 30*time.Second) }, time.Second, "open", 30 * time.Second, -1},
		{"a configured tpm less what was sent", 1000, func(b *backend) { b.capacity.sent(300, t0) }, time.Second, "up", 0, 700},
		{"what was sent over a minute ago no longer counts", 1000, func(b *backend) { b.capacity.sent(300, t0) }, 61 * time.Second, "up", 0, 1000},
		{"a fresh rate-limit header wins over the tpm", 1000, func(b *backend) {
			b.capacity.observe(http.Header{"X-Ratelimit-Remaining-Tokens": {"42"}}, t0)
		}, time.Second, "up", 0, 42},
		{"a stale header falls back to the tpm", 1000, func(b *backend) {
			b.capacity.observe(http.Header{"X-Ratelimit-Remaining-Tokens": {"42"}}, t0)
		}, 10 * time.Second, "up", 0, 1000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(config.Backend{Name: "east", Kind: "azure", URL: "http://h", TPM: tc.tpm}, up)
			tc.act(b)
			g := &Gateway{now: func() time.Time { return t0.Add(tc.at) }, backs: []*backend{b}}
			got := g.Backends()
			if len(got) != 1 || got[0].Name != "east" || got[0].Kind != "azure" {
				t.Fatalf("got %+v", got)
			}
			s := got[0]
			if s.State != tc.state {
				t.Errorf("state %s, want %s", s.State, tc.state)
			}
			switch {
			case tc.openUntil == 0 && s.OpenUntil != nil:
				t.Errorf("open_until %v, want none", *s.OpenUntil)
			case tc.openUntil != 0 && (s.OpenUntil == nil || !s.OpenUntil.Equal(t0.Add(tc.openUntil))):
				t.Errorf("open_until %v, want %v", s.OpenUntil, t0.Add(tc.openUntil))
			}
			switch {
			case tc.remaining < 0 && s.TPMRemaining != nil:
				t.Errorf("tpm_remaining %d, want unknown", *s.TPMRemaining)
			case tc.remaining >= 0 && (s.TPMRemaining == nil || *s.TPMRemaining != tc.remaining):
				t.Errorf("tpm_remaining %v, want %d", s.TPMRemaining, tc.remaining)
			}
		})
	}
}

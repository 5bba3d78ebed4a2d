package node

import (
	"net/http"
	"testing"
	"time"
)

func TestCapacityRoom(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	tests := []struct {
		name   string
		tpm    int64
		sent   []int64 // tokens sent at t0
		header string  // remaining-tokens header seen at t0
		at     time.Duration
		need   int64
		room   bool
	}{
		{"unknown capacity always has room", 0, []int64{1e9}, "", 0, 100, true},
		{"under its tpm", 1000, []int64{300, 300}, "", 0, 300, true},
		{"over its tpm", 1000, []int64{300, 300, 300}, "", 0, 200, false},
		{"a minute later the window is free", 1000, []int64{900}, "", 61 * time.Second, 500, true},
		{"remaining header below the need", 0, nil, "50", time.Second, 100, false},
		{"remaining header goes stale", 0, nil, "50", headerRemainingTTL + time.Second, 100, true},
		{"remaining header above the need", 0, nil, "5000", 0, 100, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCapacity(tc.tpm)
			for _, n := range tc.sent {
				c.sent(n, t0)
			}
			if tc.header != "" {
				c.observe(http.Header{"X-Ratelimit-Remaining-Tokens": {tc.header}}, t0)
			}
			if got := c.room(tc.need, t0.Add(tc.at)); got != tc.room {
				t.Errorf("room = %v, want %v", got, tc.room)
			}
		})
	}
}

func TestDeferFullKeepsEveryBackend(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	a, b, c := &backend{name: "a", capacity: newCapacity(100)}, &backend{name: "b", capacity: newCapacity(0)}, &backend{name: "c", capacity: newCapacity(100)}
	a.capacity.sent(90, t0)
	order := deferFull([]*backend{a, b, c}, 50, t0)
	got := ""
	for _, x := range order {
		got += x.name
	}
	if got != "bca" {
		t.Errorf("order = %s, want bca (the full backend last, none dropped)", got)
	}
}

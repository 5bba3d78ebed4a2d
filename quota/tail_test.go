package quota

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// pair is two limiters that name each other as peers, on one clock, with an
// exchange that delivers everything each has to say.
type pair struct {
	clk   *clock
	nodes [2]*Limiter
}

func newPair(t *testing.T, limits map[string]Limits) *pair {
	t.Helper()
	p := &pair{clk: newClock(t0)}
	names := [2]string{"A", "B"}
	for i := range p.nodes {
		l, err := Open(Options{Now: p.clk.now, Shards: 2, NodeName: names[i], SnapshotInterval: time.Hour}, limits)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		l.SetPeers([]string{names[1-i]})
		p.nodes[i] = l
	}
	return p
}

// exchange carries each node's Outgoing to the other.
func (p *pair) exchange(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for i, l := range p.nodes {
		us, _, err := l.Outgoing(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		mergeUsage(t, p.nodes[1-i], us...)
	}
}

// TestQuotaTailEnds: near a period quota's end, when the remainder is smaller
// than what each node's share would need for one request but not smaller
// than the request, clients must end up served or refused for the period
// (ReasonQuota, a 403), never refused by the share rule (a 429) until the
// period ends. Each case spends a quota with requests that reserve est and
// settle to actual, sent as the load says, the nodes exchanging after every
// request and a second passing; the quota must end on both nodes, spent to
// within two requests' estimate and not beyond.
func TestQuotaTailEnds(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name        string
		quota       int64
		est, actual int64
		load        func(i int) int // which node serves the i-th request; -1: both
	}{
		{"alternating on two nodes", 10000, 1000, 700, func(i int) int { return i % 2 }},
		{"both nodes at once", 10000, 1000, 700, func(int) int { return -1 }},
		{"one busy node, the other idle", 10000, 1000, 900, func(int) int { return 0 }},
		{"money budget in micro-dollars, alternating", 2000, 150, 130, func(i int) int { return i % 2 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, map[string]Limits{"a": {QuotaTokens: tt.quota, Period: Monthly}})
			var charged int64
			var done [2]bool // the node answered a quota refusal
			shareInARow := 0
			var log []string
			for i := 0; i < 1000 && !(done[0] && done[1]); i++ {
				nodes := []int{tt.load(i)}
				if nodes[0] < 0 {
					nodes = []int{0, 1}
				}
				// A client of an idle node asks once the busy one is done.
				if tt.load(0) == 0 && tt.load(1) == 0 && done[0] {
					nodes = []int{1}
				}
				var rs []Reservation
				var ns []int
				for _, n := range nodes {
					r, d := reserve(t, p.nodes[n], "a", "", tt.est)
					log = append(log, fmt.Sprintf("%c:%s", 'A'+n, cmpReason(d)))
					switch {
					case d.Allowed:
						rs, ns = append(rs, r), append(ns, n)
						shareInARow = 0
					case d.Reason == ReasonShare:
						shareInARow++
						if d.RetryAfter <= 0 || d.RetryAfter > time.Minute {
							t.Fatalf("share refusal with Retry-After %v", d.RetryAfter)
						}
					case d.Reason == ReasonQuota:
						if want := d.QuotaResetsAt.Sub(p.clk.now()); d.RetryAfter != want {
							t.Fatalf("quota refusal with Retry-After %v, want %v to the period's end", d.RetryAfter, want)
						}
						done[n] = true
					default:
						t.Fatalf("request %d: %+v", i, d)
					}
				}
				for j, r := range rs {
					p.nodes[ns[j]].Settle(ctx, r, tt.actual)
					charged += tt.actual
				}
				if shareInARow > 50 {
					t.Fatalf("%d share refusals in a row after %d charged of %d: %v", shareInARow, charged, tt.quota, log[max(len(log)-12, 0):])
				}
				p.clk.add(time.Second)
				p.exchange(t)
			}
			if !done[0] || !done[1] && tt.load(1) != 0 {
				t.Fatalf("the quota never refused on both nodes: %v", log[max(len(log)-12, 0):])
			}
			// What is left unused is less than two requests' worth, and
			// nothing beyond the quota was charged.
			if charged > tt.quota || tt.quota-charged >= 2*tt.est {
				t.Fatalf("charged %d of %d", charged, tt.quota)
			}
			for _, l := range p.nodes {
				if st := status(t, l, "a"); st.QuotaUsed != charged {
					t.Fatalf("%s sees %d used, want %d", l.node, st.QuotaUsed, charged)
				}
			}
		})
	}
}

func cmpReason(d Decision) string {
	if d.Allowed {
		return "ok"
	}
	return d.Reason
}

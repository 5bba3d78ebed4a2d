package quota

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The simulation drives two Limiters on one injected clock, with clients
// that reserve, wait for a simulated backend, settle and come back, and a
// simulated link that carries each node's Outgoing packets to the other
// after a delay. Everything runs on one goroutine in event order, so a run
// is deterministic.

// simConfig is one simulated run.
type simConfig struct {
	name     string
	limits   Limits
	clients  [2]int        // clients of node A and of node B
	delay    time.Duration // one-way link delay
	peerLag  time.Duration // Options.PeerLag; 0: default
	duration time.Duration
	share    bool // SetPeers on both nodes; false: each admits on its own view of the sum only
	seed     uint64
}

const (
	simEstimate = 1000                  // tokens each request reserves
	simGossip   = 50 * time.Millisecond // Outgoing(false) interval
	simFull     = 5 * time.Second       // Outgoing(true) interval
	simPacket   = 1300                  // bytes per packet
)

// simAdmission is one admitted request: when and in which bucket it was
// reserved, and what it is charged now (the estimate until settled).
type simAdmission struct {
	at     time.Time
	bucket int64
	charge int64
}

type simResult struct {
	admitted               []*simAdmission
	attempts, refused      int
	early                  int // refused although the true cluster usage left room
	lateShare              int // share refusals in the run's last 10 s
	shareRefusals          int64
	maxWindow, totalCharge int64
}

type simEvent struct {
	at  int64
	seq int
	fn  func()
}

type simQueue []simEvent

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	return q[i].at < q[j].at || q[i].at == q[j].at && q[i].seq < q[j].seq
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)   { *q = append(*q, x.(simEvent)) }
func (q *simQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type sim struct {
	t     testing.TB
	cfg   simConfig
	clk   *clock
	q     simQueue
	seq   int
	rng   *rand.Rand
	nodes [2]*Limiter
	res   simResult
}

func (s *sim) after(d time.Duration, fn func()) {
	heap.Push(&s.q, simEvent{at: s.clk.ns.Load() + int64(d), seq: s.seq, fn: fn})
	s.seq++
}

func (s *sim) jitter(d time.Duration) time.Duration { return time.Duration(s.rng.Int64N(int64(d))) }

// truth is the cluster's real usage as the limiters count it, from the
// admission log: for TPM, the charges in the 61 buckets up to the current
// one; for a quota, every charge.
func (s *sim) truth(now time.Time) int64 {
	var sum int64
	lo := bucketOf(now) - windowBack
	for _, a := range s.res.admitted {
		if s.cfg.limits.TPM == 0 || a.bucket >= lo {
			sum += a.charge
		}
	}
	return sum
}

func runSim(t testing.TB, cfg simConfig) simResult {
	t.Helper()
	if testing.Short() {
		t.Skip("simulation")
	}
	ctx := context.Background()
	s := &sim{t: t, cfg: cfg, clk: newClock(t0), rng: rand.New(rand.NewPCG(cfg.seed, 7))}
	names := [2]string{"A", "B"}
	for i := range s.nodes {
		l, err := Open(Options{Now: s.clk.now, Shards: 2, NodeName: names[i], SnapshotInterval: time.Hour, PeerLag: cfg.peerLag},
			map[string]Limits{"a": cfg.limits})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		s.nodes[i] = l
		if cfg.share {
			l.SetPeers([]string{names[1-i]})
		}
	}
	limit := cfg.limits.TPM
	if limit == 0 {
		limit = cfg.limits.QuotaTokens
	}
	end := t0.Add(cfg.duration).UnixNano()

	// The link: packets travel encoded, as the cluster sends them.
	send := func(from int, full bool) {
		us, recs, err := s.nodes[from].Outgoing(ctx, full)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range EncodeUsages(us, simPacket) {
			if len(p) > simPacket {
				t.Fatalf("packet of %d bytes", len(p))
			}
			s.after(cfg.delay, func() {
				got, err := DecodeUsages(p)
				if err != nil {
					t.Fatal(err)
				}
				mergeUsage(t, s.nodes[1-from], got...)
			})
		}
		if len(recs) > 0 {
			t.Fatalf("unexpected limit records %+v", recs)
		}
	}
	var gossip, full func()
	gossip = func() {
		send(0, false)
		send(1, false)
		s.after(simGossip, gossip)
	}
	full = func() {
		send(0, true)
		send(1, true)
		s.after(simFull, full)
	}
	s.after(s.jitter(simGossip), gossip)
	s.after(simFull, full)

	var client func(n int)
	client = func(n int) {
		if s.clk.ns.Load() >= end {
			return
		}
		now := s.clk.now()
		s.res.attempts++
		r, d := reserve(t, s.nodes[n], "a", "", simEstimate)
		if d.Allowed {
			a := &simAdmission{at: now, bucket: bucketOf(now), charge: simEstimate}
			s.res.admitted = append(s.res.admitted, a)
			s.after(200*time.Millisecond+s.jitter(1800*time.Millisecond), func() {
				a.charge = simEstimate*6/10 + s.rng.Int64N(simEstimate*4/10+1)
				s.nodes[n].Settle(ctx, r, a.charge)
				s.after(s.jitter(200*time.Millisecond), func() { client(n) })
			})
			return
		}
		s.res.refused++
		if d.Reason == ReasonTooLarge {
			t.Fatalf("refused as too large: %+v", d)
		}
		if s.truth(now)+simEstimate <= limit {
			s.res.early++
		}
		if d.Reason == ReasonShare && s.clk.ns.Load() >= end-int64(10*time.Second) {
			s.res.lateShare++
		}
		s.after(d.RetryAfter+s.jitter(20*time.Millisecond), func() { client(n) })
	}
	for n, k := range cfg.clients {
		for range k {
			s.after(s.jitter(time.Second), func() { client(n) })
		}
	}
	for s.q.Len() > 0 {
		e := heap.Pop(&s.q).(simEvent)
		if e.at > end+int64(5*time.Second) {
			break // only settlements of the last requests run past the end
		}
		s.clk.ns.Store(e.at)
		e.fn()
	}

	for _, l := range s.nodes {
		s.res.shareRefusals += status(t, l, "a").ShareRefusals
	}
	// The largest sum of charges reserved in any 60 s, [at, at+60s).
	adm := s.res.admitted
	slices.SortFunc(adm, func(a, b *simAdmission) int { return a.at.Compare(b.at) })
	var sum int64
	j := 0
	for i, a := range adm {
		for ; j < len(adm) && adm[j].at.Sub(a.at) < time.Minute; j++ {
			sum += adm[j].charge
		}
		s.res.maxWindow = max(s.res.maxWindow, sum)
		sum -= adm[i].charge
	}
	for _, a := range adm {
		s.res.totalCharge += a.charge
	}
	return s.res
}

func (r simResult) String() string {
	return fmt.Sprintf("%d attempts, %d admitted (%d tokens), %d refused (%d by the share rule); %d early refusals = %.1f%% of refusals, %.1f%% of attempts",
		r.attempts, len(r.admitted), r.totalCharge, r.refused, r.shareRefusals, r.early,
		100*float64(r.early)/float64(max(r.refused, 1)), 100*float64(r.early)/float64(max(r.attempts, 1)))
}

// TestTwoNodesStayWithinTPM is the cluster bound: with shares, two nodes
// whose view of each other lags by a link delay admit no more than the TPM
// in any 60 s, for even and skewed load; without them (each node checking
// only its view of the cluster sum) the same load overshoots. The clients
// retry exactly when told to, so the nodes' refused clients come back at the
// same instants: the worst case for the naive rule.
func TestTwoNodesStayWithinTPM(t *testing.T) {
	const tpm = 20000
	base := simConfig{limits: Limits{TPM: tpm}, delay: 100 * time.Millisecond, duration: 3 * time.Minute, share: true, seed: 1}
	with := func(name string, f func(*simConfig)) simConfig {
		c := base
		c.name = name
		f(&c)
		return c
	}
	const (
		bound     = iota // the run must stay within 1.02 × TPM
		overshoot        // the run must exceed it
		info             // reported only
	)
	tests := []struct {
		cfg  simConfig
		want int
	}{
		// What one limiter admits with every client: the throughput the
		// others are compared with.
		{with("one node", func(c *simConfig) { c.clients = [2]int{32, 0}; c.share = false }), bound},
		{with("even/100ms", func(c *simConfig) { c.clients = [2]int{16, 16} }), bound},
		{with("skewed/100ms", func(c *simConfig) { c.clients = [2]int{29, 3} }), bound},
		// PeerLag must cover the whole gossip lag: the delay plus the
		// exchange interval.
		{with("even/250ms", func(c *simConfig) {
			c.clients, c.delay, c.peerLag = [2]int{16, 16}, 250*time.Millisecond, 250*time.Millisecond+simGossip
		}), bound},
		{with("skewed/250ms", func(c *simConfig) {
			c.clients, c.delay, c.peerLag = [2]int{29, 3}, 250*time.Millisecond, 250*time.Millisecond+simGossip
		}), bound},
		// With the default PeerLag, shorter than that lag, it overshoots.
		{with("even/250ms, PeerLag 250ms", func(c *simConfig) { c.clients, c.delay = [2]int{16, 16}, 250*time.Millisecond }), info},
		{with("naive even/100ms", func(c *simConfig) { c.clients = [2]int{16, 16}; c.share = false }), overshoot},
		{with("naive skewed/100ms", func(c *simConfig) { c.clients = [2]int{29, 3}; c.share = false }), info},
	}
	var ideal int64
	for _, tt := range tests {
		t.Run(tt.cfg.name, func(t *testing.T) {
			r := runSim(t, tt.cfg)
			if ideal == 0 {
				ideal = r.totalCharge
			}
			ratio := float64(r.maxWindow) / tpm
			t.Logf("max 60 s sum %d = %.3f × TPM; throughput %.3f of one node's; %v",
				r.maxWindow, ratio, float64(r.totalCharge)/float64(ideal), r)
			switch tt.want {
			case overshoot:
				if ratio <= 1.02 {
					t.Fatalf("the naive rule stayed within 1.02 × TPM (%.3f): the simulation cannot tell the rules apart", ratio)
				}
			case bound:
				if ratio > 1.02 {
					t.Fatalf("max 60 s sum %d = %.3f × TPM, want ≤ 1.02", r.maxWindow, ratio)
				}
				// The bound must not come from refusing too much.
				if r.totalCharge < ideal*9/10 {
					t.Fatalf("admitted %d tokens, less than 90%% of one node's %d", r.totalCharge, ideal)
				}
			}
		})
	}
}

// TestTwoNodesStayWithinQuota: a period quota shared by two nodes is spent
// to within a request's estimate, never beyond 1.02 × the quota, and its end
// is a quota refusal on both nodes.
func TestTwoNodesStayWithinQuota(t *testing.T) {
	const quota = 50000
	for _, share := range []bool{true, false} {
		t.Run(fmt.Sprintf("share=%v", share), func(t *testing.T) {
			r := runSim(t, simConfig{limits: Limits{QuotaTokens: quota, Period: Daily}, clients: [2]int{16, 16},
				delay: 100 * time.Millisecond, duration: 30 * time.Second, share: share, seed: 2})
			ratio := float64(r.totalCharge) / quota
			t.Logf("charged %d = %.3f × quota; %v", r.totalCharge, ratio, r)
			if share && ratio > 1.02 {
				t.Fatalf("charged %.3f × quota, want ≤ 1.02", ratio)
			}
			if share && r.totalCharge < quota*9/10 {
				t.Fatalf("charged only %d of a quota of %d", r.totalCharge, quota)
			}
			// The quota is spent in a few seconds: by the last 10 s every
			// client has been served or told the period is over, none is
			// still refused by the share rule (the tail of the quota).
			if r.lateShare > 0 {
				t.Fatalf("%d share refusals in the last 10 s of the run, after the quota was spent", r.lateShare)
			}
		})
	}
}

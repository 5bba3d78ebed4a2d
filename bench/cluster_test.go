package bench

import (
	"bytes"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSpreadClients(t *testing.T) {
	tests := []struct {
		name           string
		clients, nodes int
		skew           float64
		want           []int
	}{
		{"one node", 4, 1, 0, []int{0, 0, 0, 0}},
		{"one node ignores skew", 3, 1, 0.2, []int{0, 0, 0}},
		{"round-robin over two", 5, 2, 0, []int{0, 1, 0, 1, 0}},
		{"round-robin over three", 7, 3, 0, []int{0, 1, 2, 0, 1, 2, 0}},
		{"skew 0.9 of ten on two", 10, 2, 0.9, []int{0, 0, 0, 0, 0, 0, 0, 0, 0, 1}},
		{"skew 0.5 of four on three", 4, 3, 0.5, []int{0, 0, 1, 2}},
		{"skew rounds to nearest", 32, 2, 0.9, append(slices.Repeat([]int{0}, 29), 1, 1, 1)},
		{"skew 1 puts all on node 0", 3, 2, 1, []int{0, 0, 0}},
		{"tiny skew rounds to none on node 0", 4, 2, 0.01, []int{1, 1, 1, 1}},
		{"no clients", 0, 2, 0, []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := spreadClients(tt.clients, tt.nodes, tt.skew)
			if !slices.Equal(got, tt.want) {
				t.Errorf("spreadClients(%d, %d, %v) = %v, want %v", tt.clients, tt.nodes, tt.skew, got, tt.want)
			}
		})
	}
	if got := clientsPerNode(spreadClients(32, 2, 0.9), 2); !slices.Equal(got, []int{29, 3}) {
		t.Errorf("clientsPerNode = %v, want [29 3]", got)
	}
	if got := clientsPerNode(spreadClients(32, 3, 0), 3); !slices.Equal(got, []int{11, 11, 10}) {
		t.Errorf("clientsPerNode = %v, want [11 11 10]", got)
	}
}

func TestEarlyRefusals(t *testing.T) {
	s := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
	const tpm = 1000
	tests := []struct {
		name string
		adms []admission
		ref  refusal
		want bool
	}{
		{"empty window", nil, refusal{at: s(1), done: s(1.001), estimate: 500}, true},
		{"estimate alone over the limit", nil, refusal{at: s(1), done: s(1), estimate: 1001}, false},
		{"fits exactly", []admission{{at: 0, done: s(0.1), tokens: 600, reserved: 600}},
			refusal{at: s(10), done: s(10), estimate: 400}, true},
		{"one token over", []admission{{at: 0, done: s(0.1), tokens: 601, reserved: 601}},
			refusal{at: s(10), done: s(10), estimate: 400}, false},
		{"aged out after the window", []admission{{at: 0, done: s(0.1), tokens: 900, reserved: 900}},
			refusal{at: s(60.1), done: s(60.2), estimate: 400}, true},
		{"aged out exactly at answer plus window", []admission{{at: 0, done: s(1), tokens: 900, reserved: 900}},
			refusal{at: s(61), done: s(61.5), estimate: 400}, true},
		{"still in the window: answered less than 60s before", []admission{{at: 0, done: s(1), tokens: 900, reserved: 900}},
			refusal{at: s(60.9), done: s(61.5), estimate: 400}, false},
		{"sent during the refusal counts", []admission{{at: s(10.05), done: s(10.2), tokens: 900, reserved: 900}},
			refusal{at: s(10), done: s(10.1), estimate: 400}, false},
		{"sent after the refusal's answer does not", []admission{{at: s(10.2), done: s(10.3), tokens: 900, reserved: 900}},
			refusal{at: s(10), done: s(10.1), estimate: 400}, true},
		{"in flight counts at its reservation", []admission{{at: s(9), done: s(10.5), tokens: 100, reserved: 800}},
			refusal{at: s(10), done: s(10.1), estimate: 400}, false},
		{"settled before the refusal counts at its charge", []admission{{at: s(9), done: s(9.5), tokens: 100, reserved: 800}},
			refusal{at: s(10), done: s(10.1), estimate: 400}, true},
		{"settled above the reservation counts the charge", []admission{{at: s(9), done: s(10.5), tokens: 700, reserved: 300}},
			refusal{at: s(10), done: s(10.1), estimate: 400}, false},
		{"sum of several", []admission{
			{at: s(1), done: s(1.1), tokens: 300, reserved: 300},
			{at: s(2), done: s(2.1), tokens: 300, reserved: 300},
			{at: s(3), done: s(3.1), tokens: 300, reserved: 300},
		}, refusal{at: s(4), done: s(4), estimate: 100}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := earlyRefusals(tt.adms, []refusal{tt.ref}, tpm, time.Minute)
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("earlyRefusals = %v, want [%v]", got, tt.want)
			}
		})
	}
}

// TestEarlyRefusalsBruteForce checks the prefix sums against the definition,
// admission by admission, on pseudo-random logs with many equal times.
func TestEarlyRefusalsBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tick := func(n int) time.Duration { return time.Duration(rng.IntN(n)) * 250 * time.Millisecond }
	const window = 10 * time.Second
	for round := range 300 {
		adms := make([]admission, rng.IntN(30))
		for i := range adms {
			at := tick(200)
			adms[i] = admission{at: at, done: at + tick(8), tokens: int64(rng.IntN(100)), reserved: int64(rng.IntN(150))}
		}
		refs := make([]refusal, rng.IntN(30))
		for i := range refs {
			at := tick(200)
			refs[i] = refusal{at: at, done: at + tick(3), estimate: int64(rng.IntN(200))}
		}
		tpm := int64(rng.IntN(1500))
		orig := slices.Clone(adms)
		got := earlyRefusals(adms, refs, tpm, window)
		if !slices.Equal(adms, orig) {
			t.Fatal("earlyRefusals modified its input")
		}
		for i, r := range refs {
			var w int64
			for _, a := range adms {
				if a.at > r.done || a.done+window <= r.at {
					continue // sent after the decision, or gone before it
				}
				if a.done > r.at {
					w += max(a.reserved, a.tokens) // may have been in flight
				} else {
					w += a.tokens
				}
			}
			if want := w+r.estimate <= tpm; got[i] != want {
				t.Fatalf("round %d, refusal %+v: early %v, want %v (window %d, tpm %d, admissions %+v)", round, r, got[i], want, w, tpm, adms)
			}
		}
	}
}

func TestTimedSumsUpTo(t *testing.T) {
	adms := []admission{{at: 3, tokens: 1}, {at: 1, tokens: 10}, {at: 3, tokens: 100}, {at: 7, tokens: 1000}}
	sums := prefixSums(adms, func(a admission) (time.Duration, int64, int64) { return a.at, a.tokens, 2 * a.tokens })
	for _, tt := range []struct {
		t    time.Duration
		a, b int64
	}{{0, 0, 0}, {1, 10, 20}, {2, 10, 20}, {3, 111, 222}, {6, 111, 222}, {7, 1111, 2222}, {100, 1111, 2222}} {
		if a, b := sums.upTo(tt.t); a != tt.a || b != tt.b {
			t.Errorf("upTo(%d) = %d, %d; want %d, %d", tt.t, a, b, tt.a, tt.b)
		}
	}
}

func TestDelayStats(t *testing.T) {
	if got := delayStats(nil); got != (DelayStats{}) {
		t.Errorf("delayStats(nil) = %+v, want zeros", got)
	}
	samples := make([]time.Duration, 100)
	for i := range samples {
		samples[i] = time.Duration(100-i) * time.Millisecond // 100ms down to 1ms
	}
	orig := slices.Clone(samples)
	got := delayStats(samples)
	want := DelayStats{Count: 100, P50Ms: 50, P90Ms: 90, P99Ms: 99, MaxMs: 100, MeanMs: 50.5}
	if got != want {
		t.Errorf("delayStats = %+v, want %+v", got, want)
	}
	if !slices.Equal(samples, orig) {
		t.Error("delayStats modified its input")
	}
	one := delayStats([]time.Duration{3 * time.Millisecond})
	if one.P50Ms != 3 || one.P99Ms != 3 || one.MaxMs != 3 || one.MeanMs != 3 {
		t.Errorf("delayStats of one sample = %+v", one)
	}
	// Nearest rank: p99 of 300 samples is the 297th smallest.
	three := make([]time.Duration, 300)
	for i := range three {
		three[i] = time.Duration(i+1) * time.Millisecond
	}
	if got := delayStats(three); got.P99Ms != 297 || got.P90Ms != 270 || got.P50Ms != 150 {
		t.Errorf("delayStats of 1..300ms = %+v; want p50 150, p90 270, p99 297", got)
	}
}

func TestFreeLoopbackPorts(t *testing.T) {
	ports, err := freeLoopbackPorts(3)
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 3 || ports[0] == ports[1] || ports[1] == ports[2] || ports[0] == ports[2] {
		t.Fatalf("freeLoopbackPorts(3) = %v, want three distinct ports", ports)
	}
	for _, p := range ports {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("port %d not free for TCP: %v", p, err)
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Errorf("port %d not free for UDP: %v", p, err)
		} else {
			u.Close()
		}
		l.Close()
	}
}

func TestQuotaOptionsParts(t *testing.T) {
	o, err := QuotaOptions{Executable: "llmgate", Nodes: 1}.withDefaults()
	if err != nil || !slices.Equal(o.Parts, []QuotaPart{QuotaPartQuota}) {
		t.Errorf("one node: parts %v, %v; want [quota]", o.Parts, err)
	}
	o, err = QuotaOptions{Executable: "llmgate"}.withDefaults()
	if err != nil || o.Nodes != 2 || !slices.Equal(o.Parts, QuotaParts) {
		t.Errorf("defaults: nodes %d, parts %v, %v; want 2 and every part", o.Nodes, o.Parts, err)
	}
	if _, err := (QuotaOptions{Executable: "llmgate", Nodes: 1, Parts: []QuotaPart{QuotaPartCatchup}}).withDefaults(); err == nil {
		t.Error("catchup on one node accepted")
	}
	if _, err := (QuotaOptions{Executable: "llmgate", Skew: 1.5}).withDefaults(); err == nil {
		t.Error("skew 1.5 accepted")
	}
	if _, err := (QuotaOptions{Executable: "llmgate", Parts: []QuotaPart{"bogus"}}).withDefaults(); err == nil {
		t.Error("unknown part accepted")
	}
}

// TestQuotaWriteTable checks that a report of every part prints its tables.
func TestQuotaWriteTable(t *testing.T) {
	rep := &QuotaReport{
		Nodes: 2, Parts: QuotaParts, TPM: 20000, Clients: 32, Duration: "2m30s", Skew: 0.9, ClientsPerNode: []int{29, 3},
		Runs: []QuotaRun{{
			Mode: QuotaModeMaxTokens, MaxWindowTokens: 20100, MaxWindowRatio: 1.005, FullWindow: true,
			EarlyRefusals: 12, EarlyRefusalShare: 0.001, ShareRefusals: 40,
			PerNode: []QuotaNodeLoad{{Node: "bench-1", TokenShare: 0.9, EarlyRefusals: 2}, {Node: "bench-2", TokenShare: 0.1, EarlyRefusals: 10}},
			Nodes:   []QuotaNodeStatus{{Node: "bench-1", ShareRefusals: 15}, {Node: "bench-2", ShareRefusals: 25}},
		}},
		Replication: &ReplicationReport{Nodes: 2, From: "bench-1", To: []string{"bench-2"}, Samples: 300, Found: 300,
			Delay: DelayStats{Count: 300, P50Ms: 5, P99Ms: 9}},
		Catchup: &CatchupReport{Nodes: 2, Consumers: 8, Clients: 32, Rounds: []CatchupRound{
			{Name: "bulk", Requested: 100000, Written: 100000, Node0Entries: 100000, Converged: true, CatchupSeconds: 20, DownSeen: true},
			{Name: "small", Requested: 100, Note: "not run: node 1 never caught up in the previous round"},
		}},
		Failures: []string{"part x: broke"},
	}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"29 / 3 per node, skew 0.90", "1.005", "90.0% / 10.0%", "12 (0.10% of sent)", "40 (15 / 25)",
		"replication: 300 fresh entries", "catch-up:", "20.0s", "small: not run", "failed parts:"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestParseSyncMetrics(t *testing.T) {
	text := `# HELP llmgate_cluster_cache_sync_entries_total Entries fetched by catch-up.
# TYPE llmgate_cluster_cache_sync_entries_total counter
llmgate_cluster_cache_sync_entries_total 67232
llmgate_cluster_cache_sync_seconds_sum 43.18
llmgate_cluster_cache_syncs_total{result="fetched"} 1
llmgate_cluster_cache_syncs_total{result="in_sync"} 2
llmgate_requests_total{consumer="a"} 5
`
	fetched, syncs := parseSyncMetrics(text)
	if fetched != 67232 || len(syncs) != 2 || syncs["fetched"] != 1 || syncs["in_sync"] != 2 {
		t.Errorf("parseSyncMetrics = %d, %v; want 67232, fetched 1, in_sync 2", fetched, syncs)
	}
	if got := fmtSyncs(syncs); got != "fetched 1, in_sync 2" {
		t.Errorf("fmtSyncs = %q", got)
	}
	if fetched, syncs := parseSyncMetrics("llmgate_other 1\n"); fetched != -1 || syncs != nil {
		t.Errorf("without the counters: %d, %v; want -1, nil", fetched, syncs)
	}
}

func TestTailLines(t *testing.T) {
	if got := tailLines("a\n\nb\nc\nd\n", 2); got != "c | d" {
		t.Errorf("tailLines = %q, want %q", got, "c | d")
	}
	if got := tailLines("  \n", 3); got != "(empty)" {
		t.Errorf("tailLines of blank = %q", got)
	}
}

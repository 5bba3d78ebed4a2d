package bench

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestQuotaMaxWindowSum(t *testing.T) {
	s := func(v int) time.Duration { return time.Duration(v) * time.Second }
	ev := func(pairs ...int) []tokenEvent {
		var out []tokenEvent
		for i := 0; i+1 < len(pairs); i += 2 {
			out = append(out, tokenEvent{at: s(pairs[i]), tokens: int64(pairs[i+1])})
		}
		return out
	}
	tests := []struct {
		name   string
		events []tokenEvent
		want   int64
		wantAt time.Duration
	}{
		{"none", nil, 0, 0},
		{"one", ev(5, 100), 100, s(5)},
		{"all within a minute", ev(0, 10, 30, 20, 59, 30), 60, 0},
		{"exactly a minute apart is two windows", ev(0, 10, 60, 20), 20, s(60)},
		{"just under a minute apart is one window", []tokenEvent{{0, 10}, {s(60) - 1, 20}}, 30, 0},
		{"later window larger", ev(0, 50, 61, 30, 90, 30, 120, 5), 65, s(61)},
		{"earlier window larger", ev(0, 50, 10, 50, 70, 10, 100, 10), 100, 0},
		{"unsorted input", ev(90, 30, 0, 50, 120, 5, 61, 30), 65, s(61)},
		{"equal times", ev(10, 1, 10, 2, 10, 3, 80, 5), 6, s(10)},
		{"zero tokens", ev(0, 0, 100, 0), 0, 0},
		{"sliding beats fixed minutes", ev(0, 5, 50, 40, 70, 40, 130, 5), 80, s(50)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := append([]tokenEvent(nil), tt.events...)
			got, at := maxWindowSum(tt.events, time.Minute)
			if got != tt.want || at != tt.wantAt {
				t.Errorf("maxWindowSum = %d at %v, want %d at %v", got, at, tt.want, tt.wantAt)
			}
			for i := range orig {
				if tt.events[i] != orig[i] {
					t.Fatalf("maxWindowSum modified its input")
				}
			}
		})
	}
}

// TestQuotaMaxWindowSumBruteForce checks the sweep against the definition on
// pseudo-random events.
func TestQuotaMaxWindowSumBruteForce(t *testing.T) {
	seed := uint64(1)
	next := func(n uint64) uint64 {
		seed = seed*6364136223846793005 + 1442695040888963407
		return (seed >> 33) % n
	}
	for round := range 200 {
		events := make([]tokenEvent, next(40))
		for i := range events {
			events[i] = tokenEvent{at: time.Duration(next(200)) * time.Second / 2, tokens: int64(next(1000))}
		}
		var want int64
		for _, a := range events {
			var sum int64
			for _, b := range events {
				if b.at >= a.at && b.at < a.at+time.Minute {
					sum += b.tokens
				}
			}
			want = max(want, sum)
		}
		if got, _ := maxWindowSum(events, time.Minute); got != want {
			t.Fatalf("round %d: maxWindowSum = %d, brute force %d (events %v)", round, got, want, events)
		}
	}
}

func TestQuotaRefusalEstimate(t *testing.T) {
	body := []byte(`{"error":{"message":"Rate limit of 20000 tokens per minute exceeded for consumer 'bench': this request needs an estimated 312 tokens. Retry after 1.5 seconds.","type":"tokens","code":"rate_limit_exceeded"}}`)
	if v, ok := refusalEstimate(body); !ok || v != 312 {
		t.Errorf("refusalEstimate = %d, %v; want 312, true", v, ok)
	}
	if _, ok := refusalEstimate([]byte(`{"error":{"message":"slow down"}}`)); ok {
		t.Error("refusalEstimate found an estimate in a message without one")
	}
}

// TestQuotaSmoke runs the whole scenario briefly against a binary named by
// LLMGATE_BENCH_BIN (e.g. go build -o /tmp/llmgate ./cmd/llmgate); the test
// binary itself is not llmgate, so without it the test is skipped.
func TestQuotaSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	exe := os.Getenv("LLMGATE_BENCH_BIN")
	if exe == "" {
		t.Skip("LLMGATE_BENCH_BIN not set")
	}
	opts := DefaultQuotaOptions()
	opts.Executable = exe
	opts.TPM = 3000
	opts.Clients = 8
	opts.Duration = 4 * time.Second
	opts.ReplicationSamples = 20
	opts.CatchupEntries = 300
	opts.CatchupSmallEntries = 20
	opts.CatchupTimeout = time.Minute
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Quota(ctx, opts, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	if len(rep.Runs) != 2 {
		t.Fatalf("%d runs, want 2", len(rep.Runs))
	}
	for _, r := range rep.Runs {
		if r.Admitted == 0 || r.Refused == 0 {
			t.Errorf("%s: %d admitted, %d refused; want both", r.Mode, r.Admitted, r.Refused)
		}
		if r.Errors > 0 {
			t.Errorf("%s: %d errors (first: %s)", r.Mode, r.Errors, r.FirstError)
		}
		if r.MaxWindowRatio > 1.02 {
			t.Errorf("%s: %d tokens admitted in a minute, over the TPM of %d", r.Mode, r.MaxWindowTokens, opts.TPM)
		}
		if len(r.PerNode) != 2 || r.PerNode[0].Admitted == 0 || r.PerNode[1].Admitted == 0 {
			t.Errorf("%s: per node %+v; want admissions on both nodes", r.Mode, r.PerNode)
		}
	}
	if rep.Replication == nil || rep.Replication.Found != opts.ReplicationSamples {
		t.Errorf("replication: %+v; want every sample found", rep.Replication)
	}
	if rep.Catchup == nil || len(rep.Catchup.Rounds) != 2 {
		t.Fatalf("catch-up: %+v; want two rounds", rep.Catchup)
	}
	for _, r := range rep.Catchup.Rounds {
		if !r.Converged {
			t.Errorf("catch-up %s: node 1 did not catch up: %+v", r.Name, r)
		}
	}
	for _, want := range []string{"sliding 60s", "early refusals", "replication:", "catch-up:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("tables lack %q:\n%s", want, out.String())
		}
	}
}

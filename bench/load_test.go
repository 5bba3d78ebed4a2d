package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// millis is the durations of v milliseconds each.
func millis(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"no samples is zero", nil, 50, 0},
		{"one sample is every percentile", millis(7), 99, 7 * time.Millisecond},
		{"p50 of 1..100 is 50", hundred, 50, 50 * time.Millisecond},
		{"p90 of 1..100 is 90", hundred, 90, 90 * time.Millisecond},
		{"p99 of 1..100 is 99", hundred, 99, 99 * time.Millisecond},
		{"p100 is the maximum", hundred, 100, 100 * time.Millisecond},
		{"p0 is the minimum", hundred, 0, time.Millisecond},
		{"nearest rank rounds up", millis(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of few samples is the maximum", millis(1, 2, 3), 99, 3 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarizeSortsAndReportsMax(t *testing.T) {
	s := []time.Duration{5, 1, 4, 2, 3}
	p := Summarize(s)
	want := Percentiles{Count: 5, P50: 3, P90: 5, P99: 5, Max: 5}
	if p != want {
		t.Errorf("Summarize = %+v, want %+v", p, want)
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		want float64
	}{
		{"empty is zero", nil, 0},
		{"odd count takes the middle", []float64{3, 1, 2}, 2},
		{"even count averages the middle two", []float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]float64(nil), tt.xs...)
			if got := Median(tt.xs); got != tt.want {
				t.Errorf("Median(%v) = %v, want %v", tt.xs, got, tt.want)
			}
			for i := range in {
				if in[i] != tt.xs[i] {
					t.Fatalf("Median modified its input: %v, was %v", tt.xs, in)
				}
			}
		})
	}
}

func TestRotateStartsEachRoundWithTheNextTarget(t *testing.T) {
	ts := []string{"a", "b", "c"}
	for n, want := range []string{"abc", "bca", "cab", "abc"} {
		if got := strings.Join(rotate(ts, n), ""); got != want {
			t.Errorf("rotate(abc, %d) = %s, want %s", n, got, want)
		}
	}
}

func TestParseProcStatus(t *testing.T) {
	const status = "Name:\tllmgate\nVmPeak:\t  900000 kB\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n"
	m, err := parseProcStatus(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Memory{RSS: 20 << 20, PeakRSS: 40 << 20}); m != want {
		t.Errorf("parseProcStatus = %+v, want %+v", m, want)
	}
	if _, err := parseProcStatus(strings.NewReader("Name:\tzombie\n")); err == nil {
		t.Error("a status without VmRSS (a zombie) parsed without error")
	}
}

func TestOutputWatcherHandsOverTheFirstLineAcrossWrites(t *testing.T) {
	w := newOutputWatcher()
	for _, chunk := range []string{"mock-upstream list", "ening on 127.0.0.1:9\nnext line\n", "more\n"} {
		if _, err := io.WriteString(w, chunk); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case line := <-w.first:
		if line != "mock-upstream listening on 127.0.0.1:9" {
			t.Errorf("first line = %q", line)
		}
	default:
		t.Fatal("no first line handed over")
	}
	select {
	case line := <-w.first:
		t.Errorf("a second line was handed over: %q", line)
	default:
	}
	if !strings.HasSuffix(w.Tail(), "next line\nmore\n") {
		t.Errorf("tail = %q", w.Tail())
	}
}

func TestOpenLoopSendsOnScheduleAndCountsErrors(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if r.Header.Get("api-key") != "k" {
			http.Error(w, "no key", http.StatusUnauthorized)
			return
		}
		if n%10 == 0 {
			http.Error(w, "every tenth fails", http.StatusInternalServerError)
			return
		}
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"ok":true}`)
	}))
	defer srv.Close()

	h := make(http.Header)
	h.Set("api-key", "k")
	req := &Request{URL: srv.URL, Header: h, Body: []byte(`{}`)}
	c := NewLoadClient(16)
	defer c.CloseIdleConnections()

	const rate, d = 50.0, 600 * time.Millisecond
	res, err := OpenLoop(context.Background(), c, req, rate, d)
	if err != nil {
		t.Fatal(err)
	}
	if want := int(rate * d.Seconds()); res.Sent != want {
		t.Errorf("sent %d requests, want %d (rate × duration)", res.Sent, want)
	}
	if got := int(calls.Load()); got != res.Sent {
		t.Errorf("server saw %d requests, generator says it sent %d", got, res.Sent)
	}
	if res.Errors != res.Sent/10 || res.OK != res.Sent-res.Errors {
		t.Errorf("ok %d errors %d of %d, want every tenth to be an error", res.OK, res.Errors, res.Sent)
	}
	if !strings.Contains(res.FirstError, "500") {
		t.Errorf("first error %q does not name the status", res.FirstError)
	}
	if res.Latency.Count != res.OK || res.Latency.P50 <= 0 || res.Latency.P50 > res.Latency.P99 {
		t.Errorf("latency summary %+v is inconsistent with %d OK requests", res.Latency, res.OK)
	}
	// The schedule spans (n-1)/rate; the run cannot finish before it.
	if min := time.Duration(float64(res.Sent-1) / rate * float64(time.Second)); res.Elapsed < min {
		t.Errorf("run took %v, less than its schedule %v: requests were not paced", res.Elapsed, min)
	}
}

func TestOpenLoopStopsWhenCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	c := NewLoadClient(4)
	defer c.CloseIdleConnections()
	start := time.Now()
	_, err := OpenLoop(ctx, c, &Request{URL: srv.URL}, 10, time.Minute)
	if err == nil {
		t.Fatal("a cancelled run returned no error")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("cancelled run took %v to return", took)
	}
}

func TestOpenLoopRejectsEmptySchedules(t *testing.T) {
	c := NewLoadClient(1)
	for _, tt := range []struct {
		rate float64
		d    time.Duration
	}{{0, time.Second}, {-1, time.Second}, {10, 0}, {1, 10 * time.Millisecond}} {
		if _, err := OpenLoop(context.Background(), c, &Request{URL: "http://127.0.0.1:1"}, tt.rate, tt.d); err == nil {
			t.Errorf("OpenLoop(rate %v, %v) accepted a schedule with no request", tt.rate, tt.d)
		}
	}
}

func TestClosedLoopCountsCompletedRequests(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	c := NewLoadClient(4)
	defer c.CloseIdleConnections()
	res, err := ClosedLoop(context.Background(), c, &Request{Method: http.MethodGet, URL: srv.URL}, 4, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK == 0 || res.Errors != 0 || int64(res.OK) != calls.Load() {
		t.Errorf("ok %d errors %d, server saw %d", res.OK, res.Errors, calls.Load())
	}
	if res.RPS <= 0 {
		t.Errorf("RPS = %v", res.RPS)
	}
}

func TestGatewayConfigNamesEveryAddress(t *testing.T) {
	cfg := gatewayConfig("/tmp/x/data", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4", "sk-bench", "cache: {enabled: true}\n")
	for _, want := range []string{
		`data_dir: "/tmp/x/data"`, "listen: 127.0.0.1:1", "admin_listen: 127.0.0.1:2",
		"gossip: 127.0.0.1:3", `url: "http://127.0.0.1:4/v1"`, "keys: [sk-bench]", "\ncache: {enabled: true}\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
}

func TestWriteTableShowsAddedLatencyAndRatios(t *testing.T) {
	added := 0.25
	rep := &OverheadReport{
		Rounds: 3, Duration: "5s", CPUs: 2, Concurrency: 64, ThroughputDuration: "5s",
		Latency: []LatencyRow{
			{Target: TargetDirect, Rate: 500, Sent: 7500, P50Ms: 0.5, P90Ms: 0.8, P99Ms: 1.5},
			{Target: featureTarget(FeatureKeys), Rate: 500, Sent: 7500, Errors: 2, FirstError: "status 503: down",
				P50Ms: 0.75, P90Ms: 1, P99Ms: 2, AddedP50Ms: &added, AddedP90Ms: &added, AddedP99Ms: &added},
		},
		Throughput: []ThroughputRow{{Target: TargetGateway, RPS: 4000, VsReverseProxy: 0.8}},
		Memory:     []MemoryRow{{Process: TargetGateway, IdleRSSBytes: 30 << 20, LoadedRSSBytes: 45 << 20}},
	}
	var b strings.Builder
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"+0.250ms", "0.80x", "30.0 MiB", "45.0 MiB", "llmgate+keys at 500/s: status 503: down"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if testing.Verbose() {
		t.Log("\n" + out)
	}
}

func TestMergedSlicesAreOneRunOverEveryRequest(t *testing.T) {
	part := func(lat, lags []time.Duration, errs int, first string) *LatencyResult {
		r := &LatencyResult{Rate: 500, Sent: len(lat) + errs, OK: len(lat), Errors: errs, FirstError: first, Elapsed: time.Second}
		r.summarize(lat, lags)
		return r
	}
	// The slow slice alone has a p50 of 9ms, the fast one 1ms: one run over
	// all ten requests has its median among the fast ones.
	fast := part(millis(1, 1, 2, 1, 1, 1), millis(0, 0, 0, 0, 0, 0, 3), 1, "status 502")
	slow := part(millis(9, 8, 9, 9), millis(5, 1, 1, 1), 0, "")
	got := mergeLatency([]*LatencyResult{fast, slow})
	whole := Summarize(millis(1, 1, 2, 1, 1, 1, 9, 8, 9, 9))
	if got.Latency != whole {
		t.Errorf("merged percentiles %+v, want those of every request %+v", got.Latency, whole)
	}
	if got.Sent != 11 || got.OK != 10 || got.Errors != 1 || got.FirstError != "status 502" || got.Elapsed != 2*time.Second || got.Rate != 500 {
		t.Errorf("merged counts %+v", got)
	}
	if got.LagMax != 5*time.Millisecond || got.LagP99 != 5*time.Millisecond {
		t.Errorf("merged lag p99 %v max %v, want 5ms and 5ms", got.LagP99, got.LagMax)
	}
	if one := mergeLatency([]*LatencyResult{slow}); one != slow {
		t.Error("a single slice is not its own result")
	}

	tp := mergeThroughput([]*ThroughputResult{
		{Workers: 64, OK: 3000, Errors: 2, FirstError: "timeout", Elapsed: time.Second, RPS: 3000},
		{Workers: 64, OK: 1000, Elapsed: time.Second, RPS: 1000},
	})
	if tp.OK != 4000 || tp.Errors != 2 || tp.FirstError != "timeout" || tp.Elapsed != 2*time.Second || tp.RPS != 2000 || tp.Workers != 64 {
		t.Errorf("merged throughput %+v, want 4000 requests in 2s, 2000 req/s", tp)
	}
}

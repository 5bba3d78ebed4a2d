package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// Target names used in the overhead report.
const (
	TargetDirect       = "direct"        // the mock upstream itself
	TargetGateway      = "llmgate"       // one llmgate node in front of the mock
	TargetReverseProxy = "reverse-proxy" // a bare httputil.ReverseProxy in front of the mock
	// TargetDirectResponses is the mock answering the responses feature's
	// request itself: that feature's added latency is counted from it.
	TargetDirectResponses = "direct+responses"
)

// Feature is a stage of a node's request path that the overhead benchmark
// turns on for one llmgate target; each feature adds to the one before it.
type Feature string

const (
	// FeatureKeys authenticates the consumer's key: no limits, no cache.
	FeatureKeys Feature = "keys"
	// FeatureTPM adds a TPM limit to the consumer: the prompt is counted and
	// a reservation made and settled for every request.
	FeatureTPM Feature = "tpm"
	// FeatureCacheMiss adds the semantic cache with every prompt unique:
	// each request is embedded, looked up, forwarded and its answer stored.
	FeatureCacheMiss Feature = "cache-miss"
	// FeatureCacheMissFloat32 is cache-miss with the graph walked on the
	// float32 vectors themselves (cache.index_int8: false) instead of their
	// int8 copies, the default.
	FeatureCacheMissFloat32 Feature = "cache-miss-float32"
	// FeatureCacheHit adds the cache with one prompt: every request is an
	// exact hit answered by the node.
	FeatureCacheHit Feature = "cache-hit"
	// FeatureTelemetry is keys with the request log written (info level)
	// and the usage history kept, as a node runs by default; every other
	// feature runs without them.
	FeatureTelemetry Feature = "telemetry"
	// FeatureOTLP adds OpenTelemetry to telemetry: a trace per request and
	// OTLP metrics, exported to a receiver on loopback that reads and
	// discards them.
	FeatureOTLP Feature = "otlp"
	// FeatureOTLPSampled is otlp with one trace in ten recorded
	// (telemetry.trace_sample_ratio: 0.1); the metrics are unchanged.
	FeatureOTLPSampled Feature = "otlp-sampled"
	// FeatureJWT is keys with the consumer authenticated by an OIDC bearer
	// token (RS256, its key fetched from a loopback issuer) instead of a key.
	FeatureJWT Feature = "jwt"
	// FeatureResponses is tpm with the same request sent as the Responses
	// API (POST /v1/responses: the system prompt as instructions, the user
	// text as input): counted, reserved, settled from the answer's usage,
	// and its response id remembered with owner and backend, as every
	// created response is. Compare it with tpm measured in the same run.
	FeatureResponses Feature = "responses"
)

// OverheadFeatures lists the features in the order they add up.
var OverheadFeatures = []Feature{FeatureKeys, FeatureTPM, FeatureCacheMiss, FeatureCacheMissFloat32, FeatureCacheHit, FeatureTelemetry, FeatureOTLP, FeatureOTLPSampled, FeatureJWT, FeatureResponses}

// featureTPM is the TPM limit of the tpm and cache features' consumer: far
// above what any run sends, so that every request is counted and admitted.
const featureTPM = 1_000_000_000

// Overhead request: what every load run sends, to every target.
const (
	overheadPath = "/v1/chat/completions"
	// overheadBody is a typical chat request of about 200 prompt tokens:
	// counting it is part of what a node with a TPM does per request.
	overheadBody = `{"model":"gpt-4o-mini","messages":[` +
		`{"role":"system","content":"` + overheadSystem + `"},` +
		`{"role":"user","content":"` + overheadUser + `"}` +
		`],"max_tokens":16}`
	overheadSystem = "You are a careful assistant for an engineering team. Answer in plain English, cite the relevant section of the document when you can, and say so when the document does not answer the question. Keep answers under five sentences."
	overheadUser   = "Our deployment runs three gateway nodes behind a load balancer, each with 2 vCPUs and 4 GiB of memory. Last week the p99 latency rose from 180 ms to 1.2 s during the nightly batch (about 40,000 requests between 01:00 and 02:00 UTC), while CPU stayed below 60%. The backend's x-ratelimit-remaining-tokens header dropped to zero several times. Which of these is the most likely cause, and what should we change first: the TPM limits of the batch consumer, the priority groups of the route, or the size of the nodes?"
	// responsesPath and responsesBody are the overhead request as the
	// Responses API asks it, for the responses feature.
	responsesPath    = "/v1/responses"
	responsesBody    = `{"model":"gpt-4o-mini","instructions":"` + overheadSystem + `","input":"` + overheadUser + `","max_output_tokens":16}`
	overheadKey      = "sk-bench"
	overheadConsumer = "bench"
)

// OverheadOptions configures the overhead benchmark. Zero fields take the
// defaults of DefaultOverheadOptions.
type OverheadOptions struct {
	// Executable is the llmgate binary started for the mock upstream, the
	// gateway node and the bare reverse proxy. Default: the running binary.
	Executable string
	// Rates are the open-loop request rates, requests per second. Default 500, 1000.
	Rates []int
	// Duration is the length of one open-loop run (one target, one rate, one
	// round). Default 5s.
	Duration time.Duration
	// Rounds is how many times every target is measured at every rate and
	// for throughput; the report gives medians across rounds. Default 3.
	Rounds int
	// Concurrency is the number of closed-loop workers of the throughput
	// runs. Default 64.
	Concurrency int
	// ThroughputDuration is the length of one closed-loop run. Default 5s.
	ThroughputDuration time.Duration
	// Slices splits every run of a round (one target's open loop at one
	// rate, one target's closed loop) into this many runs of an equal share
	// of its length, the targets taking turns slice by slice, and measures
	// each target over its slices together. The targets of a round are then
	// measured over the same stretch of time instead of one after another,
	// so that what else the machine does in that time weighs on each alike.
	// Default 1: one run per target, rate and round.
	Slices int
	// Warmup is the length of the closed-loop warm-up each target gets before
	// anything is measured. Default 1s.
	Warmup time.Duration
	// StartTimeout bounds how long a child process may take to come up.
	// Default 30s.
	StartTimeout time.Duration
	// Features are the llmgate targets, one node each. Default: keys only.
	Features []Feature
	// Progress receives one line per run as the benchmark goes. Nil: silent.
	Progress io.Writer
	// CPUProfileDir, when set, receives a CPU profile (pprof) of every
	// llmgate node, named after its feature: <feature>.pprof.
	CPUProfileDir string
	// Baseline, when set, is another llmgate binary (an older build) started
	// beside each feature's node with the same configuration, as one more
	// target, <feature target>@baseline, measured in the same rounds: the
	// two builds' ratios then come from one run.
	Baseline string

	otlpURL string       // the loopback OTLP receiver of the otlp feature
	issuer  *benchIssuer // the loopback OIDC issuer of the jwt feature
}

// DefaultOverheadOptions returns the defaults: rates 500 and 1000 req/s,
// 3 rounds of 5s per target and rate, 64 closed-loop workers for 5s. A whole
// run takes about two and a half minutes.
func DefaultOverheadOptions() OverheadOptions {
	return OverheadOptions{
		Rates:              []int{500, 1000},
		Duration:           5 * time.Second,
		Rounds:             3,
		Concurrency:        64,
		ThroughputDuration: 5 * time.Second,
		Slices:             1,
		Warmup:             time.Second,
		StartTimeout:       30 * time.Second,
		Features:           []Feature{FeatureKeys},
	}
}

func (o OverheadOptions) withDefaults() (OverheadOptions, error) {
	def := DefaultOverheadOptions()
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("finding the llmgate binary: %w", err)
		}
		o.Executable = exe
	}
	if len(o.Rates) == 0 {
		o.Rates = def.Rates
	}
	if len(o.Features) == 0 {
		o.Features = def.Features
	}
	seen := map[Feature]bool{}
	for _, f := range o.Features {
		if !slices.Contains(OverheadFeatures, f) {
			return o, fmt.Errorf("unknown feature %q", f)
		}
		if seen[f] {
			return o, fmt.Errorf("feature %q given twice", f)
		}
		seen[f] = true
	}
	for _, r := range o.Rates {
		if r <= 0 {
			return o, fmt.Errorf("rate %d is not positive", r)
		}
	}
	o.Duration = cmp.Or(o.Duration, def.Duration)
	o.Rounds = cmp.Or(o.Rounds, def.Rounds)
	o.Concurrency = cmp.Or(o.Concurrency, def.Concurrency)
	o.ThroughputDuration = cmp.Or(o.ThroughputDuration, def.ThroughputDuration)
	o.Slices = cmp.Or(o.Slices, def.Slices)
	o.Warmup = cmp.Or(o.Warmup, def.Warmup)
	o.StartTimeout = cmp.Or(o.StartTimeout, def.StartTimeout)
	switch {
	case o.Duration < 0, o.ThroughputDuration < 0, o.Warmup < 0, o.StartTimeout < 0:
		return o, fmt.Errorf("durations must be positive")
	case o.Rounds < 0:
		return o, fmt.Errorf("rounds %d is negative", o.Rounds)
	case o.Concurrency < 0:
		return o, fmt.Errorf("concurrency %d is negative", o.Concurrency)
	case o.Slices < 0:
		return o, fmt.Errorf("slices %d is negative", o.Slices)
	}
	for _, r := range o.Rates {
		if float64(r)*o.Duration.Seconds() < float64(o.Slices) {
			return o, fmt.Errorf("%v at %d req/s in %d slices schedules no request in a slice", o.Duration, r, o.Slices)
		}
	}
	return o, nil
}

// OverheadReport is the result of the overhead benchmark. Latencies are in
// milliseconds; every figure is the median across rounds.
type OverheadReport struct {
	StartedAt          time.Time `json:"started_at"`
	ElapsedSeconds     float64   `json:"elapsed_s"`
	CPUs               int       `json:"cpus"`
	Rates              []int     `json:"rates"`
	Duration           string    `json:"duration"`
	Rounds             int       `json:"rounds"`
	Concurrency        int       `json:"concurrency"`
	ThroughputDuration string    `json:"throughput_duration"`
	Slices             int       `json:"slices,omitempty"` // see OverheadOptions.Slices; omitted when 1

	// Latency has one row per rate and target (direct, llmgate, reverse-proxy).
	Latency []LatencyRow `json:"latency"`
	// Throughput has one row per target.
	Throughput []ThroughputRow `json:"throughput"`
	// Memory has one row per measured process (llmgate, reverse-proxy).
	Memory []MemoryRow `json:"memory"`
	// Features compares every llmgate target with the reverse proxy.
	Features []FeatureRow `json:"features"`
	// ResponsesVsChat divides the responses feature's figures by tpm's
	// (the same request as chat completions), when both ran.
	ResponsesVsChat *Comparison `json:"responses_vs_chat,omitempty"`
	// ResponsesVsChatBaseline is the same comparison for the baseline
	// binary's two nodes, when it ran.
	ResponsesVsChatBaseline *Comparison `json:"responses_vs_chat_baseline,omitempty"`
}

// Comparison holds the ratios of one llmgate target's figures to
// another's, measured in the same run.
type Comparison struct {
	Target string `json:"target"`
	Base   string `json:"base"`
	// AddedP50 is the ratio of the added p50s at the lowest rate, RPS of the
	// closed-loop throughputs, CPU of the CPU times per request.
	AddedP50 float64 `json:"added_p50"`
	RPS      float64 `json:"rps"`
	CPU      float64 `json:"cpu"`
	// The mock answering the two APIs directly does not cost the same, and
	// it shares the cores with the node: RPS mixes the node's cost with
	// the mock's. TargetOverDirect and BaseOverDirect divide each node's
	// closed-loop req/s by the mock's own for the same request (direct+responses,
	// direct) in the same round, medians across rounds; RPSOverDirect is
	// their ratio, the throughput the node keeps of its upstream's,
	// Responses against chat. Zero when the direct targets did not run.
	TargetOverDirect float64 `json:"target_rps_over_direct,omitempty"`
	BaseOverDirect   float64 `json:"base_rps_over_direct,omitempty"`
	RPSOverDirect    float64 `json:"rps_over_direct,omitempty"`
}

// FeatureRow is one llmgate target against the bare reverse proxy, from the
// same run: the ratios are those the targets are judged by.
type FeatureRow struct {
	Target string `json:"target"`
	// Rate is the open-loop rate of the latency figures (the lowest).
	Rate int `json:"rate"`
	// AddedP50Ms is the target's added p50 at Rate; VsProxyP50 divides it by
	// the reverse proxy's added p50.
	AddedP50Ms float64 `json:"added_p50_ms"`
	VsProxyP50 float64 `json:"vs_proxy_p50"`
	// RPS and VsProxyRPS are the closed-loop throughput and its ratio.
	RPS        float64 `json:"rps"`
	VsProxyRPS float64 `json:"vs_proxy_rps"`
	// CPUMicros is the process's CPU time (user + system) per completed
	// request in the closed-loop runs, median across rounds; VsProxyCPU
	// divides it by the reverse proxy's.
	CPUMicros  float64 `json:"cpu_us_per_request"`
	VsProxyCPU float64 `json:"vs_proxy_cpu"`
}

// LatencyRow is one target's open-loop latency at one rate.
type LatencyRow struct {
	Target string `json:"target"`
	Rate   int    `json:"rate"`
	// Sent and Errors are totals over all rounds. An error is any answer
	// other than 200, a transport error or a timeout.
	Sent       int    `json:"sent"`
	Errors     int    `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	// P50Ms, P90Ms and P99Ms are the medians across rounds of each round's
	// percentile, measured from the scheduled send time.
	P50Ms float64 `json:"p50_ms"`
	P90Ms float64 `json:"p90_ms"`
	P99Ms float64 `json:"p99_ms"`
	// AddedP50Ms, AddedP90Ms and AddedP99Ms are the medians across rounds of
	// (this target's percentile - direct's percentile) in the same round and
	// rate. Absent for the direct target.
	AddedP50Ms *float64 `json:"added_p50_ms,omitempty"`
	AddedP90Ms *float64 `json:"added_p90_ms,omitempty"`
	AddedP99Ms *float64 `json:"added_p99_ms,omitempty"`
	// GeneratorLagP99Ms is the median across rounds of the 99th percentile of
	// how late the load generator sent requests; it is included in the
	// latencies and, being common to all targets, cancels out of the added
	// latency on average.
	GeneratorLagP99Ms float64 `json:"generator_lag_p99_ms"`
	// Rounds are the raw per-round figures.
	Rounds []LatencyRound `json:"rounds"`
}

// LatencyRound is one open-loop run.
type LatencyRound struct {
	Sent   int     `json:"sent"`
	Errors int     `json:"errors"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// ThroughputRow is one target's closed-loop throughput.
type ThroughputRow struct {
	Target  string `json:"target"`
	Workers int    `json:"workers"`
	// RPS is the median across rounds of completed (200) requests per second.
	RPS float64 `json:"rps"`
	// VsReverseProxy is RPS divided by the reverse proxy's RPS.
	VsReverseProxy float64 `json:"vs_reverse_proxy"`
	// Errors is the total over all rounds.
	Errors     int       `json:"errors"`
	FirstError string    `json:"first_error,omitempty"`
	RoundsRPS  []float64 `json:"rounds_rps"`
	// CPUMicros is the target process's CPU time per completed request,
	// median across rounds (0 for direct, or where /proc is missing).
	CPUMicros float64   `json:"cpu_us_per_request"`
	RoundsCPU []float64 `json:"rounds_cpu_us,omitempty"`
}

// MemoryRow is one process's resident memory (Linux /proc; zero elsewhere).
type MemoryRow struct {
	Process string `json:"process"`
	// IdleRSSBytes is VmRSS after start-up and warm-up, before any load.
	IdleRSSBytes int64 `json:"idle_rss_bytes"`
	// LoadedRSSBytes is VmRSS after all load runs.
	LoadedRSSBytes int64 `json:"loaded_rss_bytes"`
	// PeakRSSBytes is VmHWM after all load runs: the largest RSS seen.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
}

// overheadTarget is one of the three things loaded.
type overheadTarget struct {
	name string
	req  *Request
	proc *process // nil for direct: the mock's memory is not reported
}

// Overhead measures what an llmgate node adds to a request. It starts a mock
// upstream (no latency), one llmgate node per feature in front of it and a
// bare reverse proxy in front of it, all from opts.Executable on 127.0.0.1,
// then, round after round, sends the same open-loop load at each rate
// directly to the mock, through each node and through the proxy (in an order
// that rotates each round), and measures each target's closed-loop
// throughput and CPU time per request. Every node is compared with the proxy
// measured in the same rounds. It writes the report as a table to w and
// returns it.
//
// Every child process is stopped and the temporary directory removed before
// Overhead returns, also on error and when ctx is cancelled.
func Overhead(ctx context.Context, opts OverheadOptions, w io.Writer) (*OverheadReport, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("overhead: %w", err)
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	started := time.Now()

	dir, err := os.MkdirTemp("", "llmgate-bench-overhead-*")
	if err != nil {
		return nil, fmt.Errorf("overhead: %w", err)
	}
	defer os.RemoveAll(dir)

	var procs []*process
	defer func() {
		for _, p := range procs {
			p.Stop()
		}
	}()

	mock, mockAddr, err := startMock(ctx, opts.Executable, opts.StartTimeout, "mock-upstream", "0")
	if err != nil {
		return nil, fmt.Errorf("overhead: %w", err)
	}
	procs = append(procs, mock)

	proxy, err := startProcess(ctx, "reverse-proxy", opts.Executable,
		"bench", "reverse-proxy", "--listen", "127.0.0.1:0", "--upstream", "http://"+mockAddr)
	if err != nil {
		return nil, fmt.Errorf("overhead: %w", err)
	}
	procs = append(procs, proxy)
	proxyAddr, err := proxy.waitListening(ctx, "reverse-proxy listening on", opts.StartTimeout)
	if err != nil {
		return nil, fmt.Errorf("overhead: %w", err)
	}

	fmt.Fprintf(progress, "mock upstream %s, reverse proxy %s (pid %d)\n", mockAddr, proxyAddr, proxy.PID())
	targets := []overheadTarget{
		{name: TargetDirect, req: overheadRequest(mockAddr)},
		{name: TargetReverseProxy, req: overheadRequest(proxyAddr), proc: proxy},
	}
	client := NewLoadClient(max(opts.Concurrency, 1024))
	defer client.CloseIdleConnections()
	if slices.Contains(opts.Features, FeatureOTLP) || slices.Contains(opts.Features, FeatureOTLPSampled) {
		url, stop, err := startOTLPSink()
		if err != nil {
			return nil, fmt.Errorf("overhead: %w", err)
		}
		defer stop()
		opts.otlpURL = url
	}
	if slices.Contains(opts.Features, FeatureJWT) {
		iss, err := startBenchIssuer()
		if err != nil {
			return nil, fmt.Errorf("overhead: %w", err)
		}
		defer iss.stop()
		opts.issuer = iss
	}
	for _, f := range opts.Features {
		gw, gwAddr, err := startGateway(ctx, opts, opts.Executable, dir, mockAddr, f)
		if err != nil {
			return nil, fmt.Errorf("overhead: %s: %w", f, err)
		}
		procs = append(procs, gw)
		if opts.Baseline != "" {
			bgw, bAddr, err := startGateway(ctx, opts, opts.Baseline, dir, mockAddr, f)
			if err != nil {
				return nil, fmt.Errorf("overhead: %s: the baseline binary: %w", f, err)
			}
			procs = append(procs, bgw)
			bt := overheadTarget{name: featureTarget(f) + "@baseline", req: featureRequest(bAddr, f), proc: bgw}
			if f == FeatureJWT {
				bt.req.Header.Del("api-key")
				bt.req.Header.Set("Authorization", "Bearer "+opts.issuer.token)
			}
			if err := checkFeature(ctx, client, bt.req, f); err != nil {
				return nil, fmt.Errorf("overhead: %s: %w", bt.name, err)
			}
			fmt.Fprintf(progress, "%s %s (pid %d)\n", bt.name, bAddr, bgw.PID())
			targets = append(targets, bt)
		}
		t := overheadTarget{name: featureTarget(f), req: featureRequest(gwAddr, f), proc: gw}
		if f == FeatureResponses {
			// Its added latency counts from the mock answering the same
			// Responses request.
			targets = append(targets, overheadTarget{name: TargetDirectResponses, req: responsesRequest(mockAddr)})
		}
		if f == FeatureJWT {
			t.req.Header.Del("api-key")
			t.req.Header.Set("Authorization", "Bearer "+opts.issuer.token)
		}
		if err := checkFeature(ctx, client, t.req, f); err != nil {
			return nil, fmt.Errorf("overhead: %s: %w", t.name, err)
		}
		fmt.Fprintf(progress, "%s %s (pid %d)\n", t.name, gwAddr, gw.PID())
		targets = append(targets, t)
	}

	// Fail fast on a target that does not answer 200, then warm every target
	// up (connections, lazily loaded tokenizers, GC heap) before measuring.
	for _, t := range targets {
		if o := t.req.do(ctx, client, time.Now()); o.err != "" {
			return nil, fmt.Errorf("overhead: probing %s: %s", t.name, o.err)
		}
	}
	for _, t := range targets {
		if _, err := ClosedLoop(ctx, client, t.req, 4, opts.Warmup); err != nil {
			return nil, fmt.Errorf("overhead: warming up %s: %w", t.name, err)
		}
	}
	idle := make(map[string]Memory)
	for _, t := range targets {
		if t.proc != nil {
			idle[t.name] = memoryOf(t.proc, progress)
		}
	}

	type key struct {
		target string
		rate   int
	}
	lat := make(map[key][]*LatencyResult)
	tput := make(map[string][]*ThroughputResult)
	cpus := make(map[string][]float64)
	pause := func() error {
		// Let the previous run's connections and garbage settle.
		select {
		case <-ctx.Done():
			return fmt.Errorf("overhead: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
			return nil
		}
	}
	nSlices := time.Duration(opts.Slices)
	for round := range opts.Rounds {
		order := rotate(targets, round)
		for _, rate := range opts.Rates {
			parts := make(map[string][]*LatencyResult)
			for range opts.Slices {
				for _, t := range order {
					if err := pause(); err != nil {
						return nil, err
					}
					res, err := OpenLoop(ctx, client, t.req, float64(rate), opts.Duration/nSlices)
					if err != nil {
						return nil, fmt.Errorf("overhead: %s at %d/s: %w", t.name, rate, err)
					}
					parts[t.name] = append(parts[t.name], res)
				}
			}
			for _, t := range order {
				res := mergeLatency(parts[t.name])
				lat[key{t.name, rate}] = append(lat[key{t.name, rate}], res)
				fmt.Fprintf(progress, "round %d/%d  %-13s %5d/s  p50 %s  p90 %s  p99 %s  errors %d%s\n",
					round+1, opts.Rounds, t.name, rate, fmtMs(ms(res.Latency.P50)), fmtMs(ms(res.Latency.P90)),
					fmtMs(ms(res.Latency.P99)), res.Errors, firstErrorNote(res.FirstError))
			}
		}
		parts := make(map[string][]*ThroughputResult)
		cpu := make(map[string]time.Duration)
		for range opts.Slices {
			for _, t := range order {
				if err := pause(); err != nil {
					return nil, err
				}
				cpu0 := cpuOf(t.proc)
				res, err := ClosedLoop(ctx, client, t.req, opts.Concurrency, opts.ThroughputDuration/nSlices)
				if err != nil {
					return nil, fmt.Errorf("overhead: throughput of %s: %w", t.name, err)
				}
				if cpu1 := cpuOf(t.proc); cpu0 > 0 && cpu1 > cpu0 {
					cpu[t.name] += cpu1 - cpu0
				}
				parts[t.name] = append(parts[t.name], res)
			}
		}
		for _, t := range order {
			res := mergeThroughput(parts[t.name])
			perReq := 0.0
			if res.OK > 0 {
				perReq = float64(cpu[t.name]) / float64(time.Microsecond) / float64(res.OK)
			}
			tput[t.name] = append(tput[t.name], res)
			cpus[t.name] = append(cpus[t.name], perReq)
			fmt.Fprintf(progress, "round %d/%d  %-13s closed loop x%d  %.0f req/s  %.0f µs CPU/req  errors %d%s\n",
				round+1, opts.Rounds, t.name, opts.Concurrency, res.RPS, perReq, res.Errors, firstErrorNote(res.FirstError))
		}
	}

	rep := &OverheadReport{
		StartedAt:          started.UTC(),
		CPUs:               runtime.NumCPU(),
		Rates:              opts.Rates,
		Duration:           opts.Duration.String(),
		Rounds:             opts.Rounds,
		Concurrency:        opts.Concurrency,
		ThroughputDuration: opts.ThroughputDuration.String(),
	}
	if opts.Slices > 1 {
		rep.Slices = opts.Slices
	}
	for _, t := range targets {
		if t.proc == nil {
			continue
		}
		loaded := memoryOf(t.proc, progress)
		rep.Memory = append(rep.Memory, MemoryRow{
			Process:        t.name,
			IdleRSSBytes:   idle[t.name].RSS,
			LoadedRSSBytes: loaded.RSS,
			PeakRSSBytes:   loaded.PeakRSS,
		})
	}
	for _, rate := range opts.Rates {
		for _, t := range targets {
			direct := lat[key{TargetDirect, rate}]
			if t.name == featureTarget(FeatureResponses) {
				direct = lat[key{TargetDirectResponses, rate}]
			}
			rep.Latency = append(rep.Latency, latencyRow(t.name, rate, lat[key{t.name, rate}], direct))
		}
	}
	var floor float64
	for _, t := range targets {
		row := throughputRow(t.name, opts.Concurrency, tput[t.name])
		if t.proc != nil {
			row.RoundsCPU = cpus[t.name]
			row.CPUMicros = Median(row.RoundsCPU)
		}
		if t.name == TargetReverseProxy {
			floor = row.RPS
		}
		rep.Throughput = append(rep.Throughput, row)
	}
	for i := range rep.Throughput {
		if floor > 0 {
			rep.Throughput[i].VsReverseProxy = rep.Throughput[i].RPS / floor
		}
	}
	rep.Features = featureRows(rep, slices.Min(opts.Rates))
	rep.ResponsesVsChat = compareFeatures(rep.Features, FeatureResponses, FeatureTPM)
	overDirect(rep.ResponsesVsChat, tput, TargetDirectResponses, TargetDirect)
	if opts.Baseline != "" {
		rep.ResponsesVsChatBaseline = compareTargets(rep.Features,
			featureTarget(FeatureResponses)+"@baseline", featureTarget(FeatureTPM)+"@baseline")
		overDirect(rep.ResponsesVsChatBaseline, tput, TargetDirectResponses, TargetDirect)
	}
	rep.ElapsedSeconds = time.Since(started).Seconds()

	if err := rep.WriteTable(w); err != nil {
		return rep, fmt.Errorf("overhead: writing table: %w", err)
	}
	return rep, nil
}

// featureTarget names the llmgate target of feature f in the report.
func featureTarget(f Feature) string { return TargetGateway + "+" + string(f) }

// startGateway starts the benchmarked node of feature f, from the binary
// exe, against the mock at mockAddr.
func startGateway(ctx context.Context, opts OverheadOptions, exe, dir, mockAddr string, f Feature) (*process, string, error) {
	var args []string
	name := "bench-" + string(f)
	if exe != opts.Executable {
		name += "-baseline"
	}
	if opts.CPUProfileDir != "" {
		args = []string{"--cpu-profile", filepath.Join(opts.CPUProfileDir, strings.TrimPrefix(name, "bench-")+".pprof")}
	}
	n, err := startNode(ctx, exe, opts.StartTimeout, dir, name, func(dataDir string, n *benchNode) string {
		cfg := featureConfig(gatewayConfig(dataDir, n.listen, n.admin, n.gossip, mockAddr, overheadKey, ""), f, opts.otlpURL)
		if f == FeatureJWT {
			cfg = jwtConfig(cfg, opts.issuer.url)
		}
		return cfg
	}, args...)
	if err != nil {
		return nil, "", err
	}
	return n.proc, n.listen, nil
}

// gatewayConfig returns the YAML config of a benchmarked node: one openai
// backend (the mock), one route, one consumer without limits whose key is
// key, and whatever extra top-level YAML the scenario adds (no cache unless
// extra turns it on).
func gatewayConfig(dataDir, listen, adminListen, gossip, mockAddr, key, extra string) string {
	return fmt.Sprintf(`node: {name: bench-1, data_dir: %q}
listen: %s
admin_listen: %s
cluster: {gossip: %s}
log: {level: warn}
backends:
  - {name: mock, kind: openai, url: "http://%s/v1", deployments: [gpt-4o-mini]}
routes:
  gpt-4o-mini: {pool: [[mock]]}
consumers:
  - {name: %s, keys: [%s]}
`, dataDir, listen, adminListen, gossip, mockAddr, overheadConsumer, key) + extra
}

// overheadRequest is the request every run sends to the target at addr. The
// consumer key is ignored by the mock and the bare proxy; the cache is
// bypassed explicitly so the node's proxying path is what gets measured even
// if caching were on by default.
func overheadRequest(addr string) *Request {
	h := make(http.Header)
	h.Set("Content-Type", "application/json")
	h.Set("api-key", overheadKey)
	h.Set("x-llmgate-cache", "off")
	return &Request{
		Method: http.MethodPost,
		URL:    "http://" + addr + overheadPath,
		Header: h,
		Body:   []byte(overheadBody),
	}
}

// responsesRequest is the overhead request as the Responses API asks it,
// to the target at addr.
func responsesRequest(addr string) *Request {
	r := overheadRequest(addr)
	r.URL = "http://" + addr + responsesPath
	r.Body = []byte(responsesBody)
	return r
}

// featureConfig turns the keys-only config of a benchmarked node into
// feature f's: the same consumer with a TPM limit for the tpm and cache
// features, the cache on for the cache features, the request log and usage
// history only for telemetry and otlp, which exports to otlpURL.
func featureConfig(cfg string, f Feature, otlpURL string) string {
	switch f {
	case FeatureKeys, FeatureJWT:
		return cfg + "telemetry: {usage_history: false}\n"
	case FeatureTelemetry:
		return strings.Replace(cfg, "log: {level: warn}", "log: {level: info}", 1)
	case FeatureOTLP:
		return strings.Replace(cfg, "log: {level: warn}", "log: {level: info}", 1) + "telemetry: {otlp_endpoint: \"" + otlpURL + "\"}\n"
	case FeatureOTLPSampled:
		return strings.Replace(cfg, "log: {level: warn}", "log: {level: info}", 1) + "telemetry: {otlp_endpoint: \"" + otlpURL + "\", trace_sample_ratio: 0.1}\n"
	}
	cfg += "telemetry: {usage_history: false}\n"
	limited := fmt.Sprintf("keys: [%s], tpm: %d}", overheadKey, featureTPM)
	cfg = strings.Replace(cfg, "keys: ["+overheadKey+"]}", limited, 1)
	switch f {
	case FeatureCacheMiss, FeatureCacheHit:
		cfg += "cache: {enabled: true}\n"
	case FeatureCacheMissFloat32:
		cfg += "cache: {enabled: true, index_int8: false}\n"
	}
	return cfg
}

// featureRequest is the request of feature f's target at addr: the overhead
// request, with the cache left on for the cache features and, for
// cache-miss, a different prompt every time.
func featureRequest(addr string, f Feature) *Request {
	r := overheadRequest(addr)
	switch f {
	case FeatureCacheHit:
		r.Header.Del("x-llmgate-cache")
	case FeatureResponses:
		r = responsesRequest(addr)
	case FeatureCacheMiss, FeatureCacheMissFloat32:
		r.Header.Del("x-llmgate-cache")
		var seq atomic.Int64
		r.NextBody = func() []byte {
			return []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":` +
				strconv.Quote(cacheHitPrompt(int(seq.Add(1)))) + `}],"max_tokens":16}`)
		}
	}
	return r
}

// checkFeature makes sure the target does what its feature says: a cache-hit
// target answers from its cache (after a first request stores the answer,
// in the background), a cache-miss target misses.
func checkFeature(ctx context.Context, c *http.Client, r *Request, f Feature) error {
	want := ""
	switch f {
	case FeatureCacheHit:
		want = "hit"
	case FeatureCacheMiss, FeatureCacheMissFloat32:
		want = "miss"
	default:
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		probe := *r
		probe.NextBody = nil
		if r.NextBody != nil {
			probe.Body = r.NextBody()
		}
		got, _, err := cacheState(ctx, c, &probe)
		if err != nil {
			return fmt.Errorf("probing the cache: %w", err)
		}
		if got == want {
			return nil
		}
		if want == "miss" || time.Now().After(deadline) {
			return fmt.Errorf("x-llmgate-cache is %q, want %q", got, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cpuOf reads p's CPU time; 0 when unknown (no process, not Linux).
func cpuOf(p *process) time.Duration {
	if p == nil {
		return 0
	}
	t, err := readCPU(p.PID())
	if err != nil {
		return 0
	}
	return t
}

// featureRows compares every llmgate target of rep with the reverse proxy at
// the open-loop rate rate.
func featureRows(rep *OverheadReport, rate int) []FeatureRow {
	var proxyLat, proxyTput *float64
	var proxyCPU float64
	for _, l := range rep.Latency {
		if l.Target == TargetReverseProxy && l.Rate == rate {
			proxyLat = l.AddedP50Ms
		}
	}
	for _, t := range rep.Throughput {
		if t.Target == TargetReverseProxy {
			proxyTput, proxyCPU = &t.RPS, t.CPUMicros
		}
	}
	ratio := func(a float64, b *float64) float64 {
		if b == nil || *b <= 0 {
			return 0
		}
		return a / *b
	}
	var rows []FeatureRow
	for _, t := range rep.Throughput {
		if !strings.HasPrefix(t.Target, TargetGateway+"+") {
			continue
		}
		row := FeatureRow{Target: t.Target, Rate: rate, RPS: t.RPS, CPUMicros: t.CPUMicros}
		for _, l := range rep.Latency {
			if l.Target == t.Target && l.Rate == rate && l.AddedP50Ms != nil {
				row.AddedP50Ms = *l.AddedP50Ms
			}
		}
		row.VsProxyP50 = ratio(row.AddedP50Ms, proxyLat)
		row.VsProxyRPS = ratio(row.RPS, proxyTput)
		row.VsProxyCPU = ratio(row.CPUMicros, &proxyCPU)
		rows = append(rows, row)
	}
	return rows
}

// compareFeatures divides target's figures by base's; nil unless both are
// among rows.
func compareFeatures(rows []FeatureRow, target, base Feature) *Comparison {
	return compareTargets(rows, featureTarget(target), featureTarget(base))
}

// compareTargets divides the figures of the target named target by those
// of base; nil unless both are among rows.
func compareTargets(rows []FeatureRow, target, base string) *Comparison {
	var t, b *FeatureRow
	for i := range rows {
		switch rows[i].Target {
		case target:
			t = &rows[i]
		case base:
			b = &rows[i]
		}
	}
	if t == nil || b == nil {
		return nil
	}
	div := func(x, y float64) float64 {
		if y <= 0 {
			return 0
		}
		return x / y
	}
	return &Comparison{Target: t.Target, Base: b.Target,
		AddedP50: div(t.AddedP50Ms, b.AddedP50Ms), RPS: div(t.RPS, b.RPS), CPU: div(t.CPUMicros, b.CPUMicros)}
}

// overDirect fills c's throughputs relative to the mock's own for each
// API: c.Target's closed-loop rounds divided by targetDirect's, c.Base's
// by baseDirect's, round by round (the same round loads them one after
// the other), medians across rounds. Nothing when c is nil or a direct
// target has no rounds.
func overDirect(c *Comparison, tput map[string][]*ThroughputResult, targetDirect, baseDirect string) {
	if c == nil {
		return
	}
	ratio := func(name, direct string) float64 {
		var rs []float64
		for i, r := range tput[name] {
			if i < len(tput[direct]) && tput[direct][i].RPS > 0 {
				rs = append(rs, r.RPS/tput[direct][i].RPS)
			}
		}
		if len(rs) == 0 {
			return 0
		}
		return Median(rs)
	}
	c.TargetOverDirect, c.BaseOverDirect = ratio(c.Target, targetDirect), ratio(c.Base, baseDirect)
	if c.TargetOverDirect > 0 && c.BaseOverDirect > 0 {
		c.RPSOverDirect = c.TargetOverDirect / c.BaseOverDirect
	}
}

// rotate returns ts rotated left by n, so each round starts with a different
// target and no target always runs right after another.
func rotate[T any](ts []T, n int) []T {
	out := make([]T, 0, len(ts))
	for i := range ts {
		out = append(out, ts[(i+n)%len(ts)])
	}
	return out
}

// memoryOf reads p's memory; a failure (not Linux, process gone) is noted on
// progress and reported as zeros rather than failing the whole run.
func memoryOf(p *process, progress io.Writer) Memory {
	m, err := readMemory(p.PID())
	if err != nil {
		fmt.Fprintf(progress, "%s: %v\n", p.name, err)
	}
	return m
}

// latencyRow folds the rounds of one target at one rate into a report row;
// direct holds the same rounds of the direct target, for the added latency.
func latencyRow(target string, rate int, rounds, direct []*LatencyResult) LatencyRow {
	row := LatencyRow{Target: target, Rate: rate}
	var p50, p90, p99, lag, d50, d90, d99 []float64
	for i, r := range rounds {
		row.Sent += r.Sent
		row.Errors += r.Errors
		row.FirstError = cmp.Or(row.FirstError, r.FirstError)
		row.Rounds = append(row.Rounds, LatencyRound{
			Sent: r.Sent, Errors: r.Errors,
			P50Ms: ms(r.Latency.P50), P90Ms: ms(r.Latency.P90), P99Ms: ms(r.Latency.P99), MaxMs: ms(r.Latency.Max),
		})
		p50 = append(p50, ms(r.Latency.P50))
		p90 = append(p90, ms(r.Latency.P90))
		p99 = append(p99, ms(r.Latency.P99))
		lag = append(lag, ms(r.LagP99))
		if !isDirect(target) && i < len(direct) {
			d := direct[i].Latency
			d50 = append(d50, ms(r.Latency.P50-d.P50))
			d90 = append(d90, ms(r.Latency.P90-d.P90))
			d99 = append(d99, ms(r.Latency.P99-d.P99))
		}
	}
	row.P50Ms, row.P90Ms, row.P99Ms = Median(p50), Median(p90), Median(p99)
	row.GeneratorLagP99Ms = Median(lag)
	if !isDirect(target) && len(d50) > 0 {
		a50, a90, a99 := Median(d50), Median(d90), Median(d99)
		row.AddedP50Ms, row.AddedP90Ms, row.AddedP99Ms = &a50, &a90, &a99
	}
	return row
}

// isDirect tells the targets that are the mock itself.
func isDirect(target string) bool { return target == TargetDirect || target == TargetDirectResponses }

// throughputRow folds the closed-loop rounds of one target into a report row.
func throughputRow(target string, workers int, rounds []*ThroughputResult) ThroughputRow {
	row := ThroughputRow{Target: target, Workers: workers}
	for _, r := range rounds {
		row.Errors += r.Errors
		row.FirstError = cmp.Or(row.FirstError, r.FirstError)
		row.RoundsRPS = append(row.RoundsRPS, r.RPS)
	}
	row.RPS = Median(row.RoundsRPS)
	return row
}

// WriteTable writes the report as aligned text tables.
func (r *OverheadReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	interleaved := ""
	if r.Slices > 1 {
		interleaved = fmt.Sprintf(" (in %d slices, the targets taking turns)", r.Slices)
	}
	fmt.Fprintf(tw, "llmgate bench overhead: %d round(s), %s per target and rate%s, medians across rounds, %d CPU(s)\n\n",
		r.Rounds, r.Duration, interleaved, r.CPUs)
	// tabwriter right-aligns every column; names are padded to one width per
	// section so that they read left-aligned.
	pad := func(title string, names ...string) func(string) string {
		n := len(title)
		for _, s := range names {
			n = max(n, len(s))
		}
		return func(s string) string { return fmt.Sprintf("%-*s", n, s) }
	}
	var names []string
	for _, l := range r.Latency {
		names = append(names, l.Target)
	}
	name := pad("open loop", names...)
	fmt.Fprintf(tw, "%s\trate/s\tp50\tp90\tp99\t+p50\t+p90\t+p99\tsent\terrors\t\n", name("open loop"))
	for _, l := range r.Latency {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t\n", name(l.Target), l.Rate,
			fmtMs(l.P50Ms), fmtMs(l.P90Ms), fmtMs(l.P99Ms),
			fmtAdded(l.AddedP50Ms), fmtAdded(l.AddedP90Ms), fmtAdded(l.AddedP99Ms), l.Sent, l.Errors)
	}
	title := fmt.Sprintf("closed loop (%d workers, %s)", r.Concurrency, r.ThroughputDuration)
	names = names[:0]
	for _, t := range r.Throughput {
		names = append(names, t.Target)
	}
	name = pad(title, names...)
	fmt.Fprintf(tw, "\n%s\treq/s\tvs reverse-proxy\tCPU/req\terrors\t\n", name(title))
	for _, t := range r.Throughput {
		cpu := "-"
		if t.CPUMicros > 0 {
			cpu = fmt.Sprintf("%.0fµs", t.CPUMicros)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2fx\t%s\t%d\t\n", name(t.Target), t.RPS, t.VsReverseProxy, cpu, t.Errors)
	}
	if len(r.Features) > 0 {
		names = names[:0]
		for _, f := range r.Features {
			names = append(names, f.Target)
		}
		title := fmt.Sprintf("vs reverse-proxy (+p50 at %d/s)", r.Features[0].Rate)
		name = pad(title, names...)
		fmt.Fprintf(tw, "\n%s\t+p50\t+p50 ratio\treq/s ratio\tCPU/req ratio\t\n", name(title))
		for _, f := range r.Features {
			fmt.Fprintf(tw, "%s\t%+.3fms\t%.2fx\t%.2fx\t%.2fx\t\n", name(f.Target), f.AddedP50Ms, f.VsProxyP50, f.VsProxyRPS, f.VsProxyCPU)
		}
	}
	names = names[:0]
	for _, m := range r.Memory {
		names = append(names, m.Process)
	}
	name = pad("memory (VmRSS)", names...)
	fmt.Fprintf(tw, "\n%s\tidle\tafter load\tpeak\t\n", name("memory (VmRSS)"))
	for _, m := range r.Memory {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", name(m.Process), fmtBytes(m.IdleRSSBytes), fmtBytes(m.LoadedRSSBytes), fmtBytes(m.PeakRSSBytes))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range []*Comparison{r.ResponsesVsChat, r.ResponsesVsChatBaseline} {
		if c == nil {
			continue
		}
		// The responses target's +p50 counts from direct+responses.
		if _, err := fmt.Fprintf(w, "\n%s / %s (the same request as the Responses API / as chat completions): +p50 %.2fx, req/s %.2fx, CPU/req %.2fx\n"+
			"(%s's added latency counts from %s, the mock answering the same Responses request)\n",
			c.Target, c.Base, c.AddedP50, c.RPS, c.CPU, c.Target, TargetDirectResponses); err != nil {
			return err
		}
		if c.RPSOverDirect > 0 {
			// The raw req/s ratio above includes the mock's own cost, which
			// differs between the two APIs on the same cores.
			if _, err := fmt.Fprintf(w, "req/s of each node over the mock's own for its API: %s %.2f of %s's, %s %.2f of %s's: %.2fx\n",
				c.Target, c.TargetOverDirect, TargetDirectResponses, c.Base, c.BaseOverDirect, TargetDirect, c.RPSOverDirect); err != nil {
				return err
			}
		}
	}
	var notes []string
	for _, l := range r.Latency {
		if l.FirstError != "" {
			notes = append(notes, fmt.Sprintf("%s at %d/s: %s", l.Target, l.Rate, l.FirstError))
		}
	}
	for _, t := range r.Throughput {
		if t.FirstError != "" {
			notes = append(notes, fmt.Sprintf("%s closed loop: %s", t.Target, t.FirstError))
		}
	}
	var lag float64
	for _, l := range r.Latency {
		lag = max(lag, l.GeneratorLagP99Ms)
	}
	if _, err := fmt.Fprintf(w, "\n+pN: latency added versus direct (difference of the percentiles within a round, median across rounds).\n"+
		"Latencies count from the scheduled send time; the load generator's own lag (p99 %s) is in all of them alike.\n", fmtMs(lag)); err != nil {
		return err
	}
	if len(notes) > 0 {
		if _, err := fmt.Fprintf(w, "first errors:\n  %s\n", strings.Join(notes, "\n  ")); err != nil {
			return err
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtMs(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) + "ms" }

func fmtAdded(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%+.3fms", *v)
}

func fmtBytes(b int64) string {
	if b == 0 {
		return "n/a"
	}
	return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB"
}

func firstErrorNote(s string) string {
	if s == "" {
		return ""
	}
	return " (first: " + s + ")"
}

// startOTLPSink serves OTLP/HTTP on loopback for the otlp feature: it reads
// every export and answers success, as a collector would, keeping nothing.
func startOTLPSink() (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("otlp receiver: %w", err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	})}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/llmgate/llmgate/bench"
	"github.com/llmgate/llmgate/index/graph"
)

// benchScenario is one scenario of `llmgate bench`.
type benchScenario struct {
	name string
	help string
	run  func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// benchScenarios lists the scenarios of `llmgate bench`, in help order.
func benchScenarios() []benchScenario {
	return []benchScenario{
		{"overhead", "latency and throughput added by a node, versus direct and a bare reverse proxy", runBenchOverhead},
		{"cache", "index recall, latency and memory at 10k/100k/1M entries; hit quality by threshold; cache hits end to end", runBenchCache},
		{"quota", "a cluster's sliding-minute TPM against the limit, early refusals, cache replication delay and catch-up", runBenchQuota},
		{"reverse-proxy", "run the bare httputil.ReverseProxy the overhead scenario compares with", runBenchReverseProxy},
	}
}

// runBench runs `llmgate bench SCENARIO [flags]`; args[0] is the scenario.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	scenarios := benchScenarios()
	known := make([]string, 0, len(scenarios))
	for _, s := range scenarios {
		known = append(known, s.name)
	}
	if len(args) == 0 {
		writeBenchUsage(stderr)
		return fmt.Errorf("bench: missing scenario (known: %s)", strings.Join(known, ", "))
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		writeBenchUsage(stdout)
		return flag.ErrHelp
	}
	for _, s := range scenarios {
		if s.name == args[0] {
			return s.run(ctx, args[1:], stdout, stderr)
		}
	}
	return fmt.Errorf("bench: unknown scenario %q (known: %s)", args[0], strings.Join(known, ", "))
}

func writeBenchUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: llmgate bench SCENARIO [flags]\n\nScenarios:")
	for _, s := range benchScenarios() {
		fmt.Fprintf(w, "  %-15s %s\n", s.name, s.help)
	}
	fmt.Fprintln(w, "\nRun 'llmgate bench SCENARIO --help' for a scenario's flags.")
}

// runBenchOverhead runs `llmgate bench overhead`: progress goes to stderr,
// the table to stdout, and the JSON report to --out.
func runBenchOverhead(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	def := bench.DefaultOverheadOptions()
	fs := flag.NewFlagSet("llmgate bench overhead", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rates := fs.String("rates", joinInts(def.Rates), "open-loop request rates, requests/s, comma separated")
	duration := fs.Duration("duration", def.Duration, "length of one open-loop run (per target, rate and round)")
	rounds := fs.Int("rounds", def.Rounds, "rounds; every figure is the median across rounds")
	concurrency := fs.Int("concurrency", def.Concurrency, "closed-loop workers for the throughput runs")
	tputDuration := fs.Duration("throughput-duration", def.ThroughputDuration, "length of one closed-loop throughput run")
	nSlices := fs.Int("slices", def.Slices, "split each target's run of a round into `N` slices, the targets taking turns slice by slice, so that they are measured over the same stretch of time")
	features := fs.String("features", joinNames(def.Features), "llmgate targets, one node each, comma separated: "+joinNames(bench.OverheadFeatures)+" (keys only; + a TPM; + the cache, every prompt unique; the same with the graph walked on float32 vectors; + the cache, every request a hit; keys + request log and usage history; + OpenTelemetry to a loopback receiver; the same tracing one request in ten; keys replaced by an OIDC bearer token; tpm with the same request sent as the Responses API, compared with tpm)")
	out := fs.String("out", "", "also write the report as JSON to `FILE`")
	cpuProfile := fs.String("cpu-profile", "", "write a CPU profile (pprof) of every llmgate node to `DIR`/FEATURE.pprof")
	baseline := fs.String("baseline", "", "also measure the llmgate binary `FILE` (an older build) with each feature's configuration, in the same rounds")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench overhead: unexpected argument %q", fs.Arg(0))
	}
	opts := def
	var err error
	if opts.Features, err = parseNames(*features, "feature", bench.OverheadFeatures); err != nil {
		return fmt.Errorf("bench overhead: --features: %w", err)
	}
	if opts.Rates, err = parseBenchRates(*rates); err != nil {
		return fmt.Errorf("bench overhead: --rates: %w", err)
	}
	if *duration <= 0 {
		return errors.New("bench overhead: --duration must be positive")
	}
	if *tputDuration <= 0 {
		return errors.New("bench overhead: --throughput-duration must be positive")
	}
	if *rounds < 1 {
		return errors.New("bench overhead: --rounds must be at least 1")
	}
	if *concurrency < 1 {
		return errors.New("bench overhead: --concurrency must be at least 1")
	}
	if *nSlices < 1 {
		return errors.New("bench overhead: --slices must be at least 1")
	}
	opts.Slices = *nSlices
	opts.Duration, opts.Rounds, opts.Concurrency, opts.ThroughputDuration = *duration, *rounds, *concurrency, *tputDuration
	opts.Progress = stderr
	if *cpuProfile != "" {
		if err := os.MkdirAll(*cpuProfile, 0o755); err != nil {
			return fmt.Errorf("bench overhead: --cpu-profile: %w", err)
		}
		opts.CPUProfileDir = *cpuProfile
	}

	opts.Baseline = *baseline
	rep, err := bench.Overhead(ctx, opts, stdout)
	if err != nil {
		return err
	}
	if *out != "" {
		if err := writeBenchJSON(*out, rep); err != nil {
			return fmt.Errorf("bench overhead: %w", err)
		}
	}
	return nil
}

// runBenchQuota runs `llmgate bench quota`: progress goes to stderr, the
// tables to stdout, and the JSON report to --out. A part that fails does not
// stop the others; the report of what ran is still written.
func runBenchQuota(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	def := bench.DefaultQuotaOptions()
	fs := flag.NewFlagSet("llmgate bench quota", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodes := fs.Int("nodes", def.Nodes, "clustered nodes the clients are spread over (1: a node alone, quota part only)")
	skew := fs.Float64("skew", 0, "share of the clients on node 0, 0 < F <= 1; the rest round-robin over the other nodes (default: all round-robin)")
	parts := fs.String("parts", joinNames(bench.QuotaParts), "parts to run, comma separated: quota, replication, catchup, gossip (all but quota need --nodes 2 or more)")
	tpm := fs.Int64("tpm", def.TPM, "the consumer's tokens-per-minute limit")
	clients := fs.Int("clients", def.Clients, "concurrent closed-loop clients of the consumer")
	duration := fs.Duration("duration", def.Duration, "length of the run of each mode (over 60s for a full sliding window)")
	modes := fs.String("modes", joinNames(def.Modes), "modes to run, comma separated: "+joinNames(bench.QuotaModes))
	samples := fs.Int("replication-samples", def.ReplicationSamples, "fresh cache entries timed by the replication part")
	catchupEntries := fs.Int("catchup-entries", def.CatchupEntries, "cache entries written while a node is down, in the catch-up part's bulk round")
	catchupTimeout := fs.Duration("catchup-timeout", def.CatchupTimeout, "how long the catch-up part waits for the restarted node")
	out := fs.String("out", "", "also write the report as JSON to `FILE`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench quota: unexpected argument %q", fs.Arg(0))
	}
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	opts := def
	var err error
	if opts.Modes, err = parseNames(*modes, "mode", bench.QuotaModes); err != nil {
		return fmt.Errorf("bench quota: --modes: %w", err)
	}
	switch {
	case *nodes < 1:
		return errors.New("bench quota: --nodes must be at least 1")
	case set["skew"] && !(*skew > 0 && *skew <= 1):
		return errors.New("bench quota: --skew must be above 0 and at most 1 (leave it out for a round-robin spread)")
	case *tpm < 1:
		return errors.New("bench quota: --tpm must be at least 1")
	case *clients < 1:
		return errors.New("bench quota: --clients must be at least 1")
	case *duration <= 0:
		return errors.New("bench quota: --duration must be positive")
	case *samples < 1:
		return errors.New("bench quota: --replication-samples must be at least 1")
	case *catchupEntries < 1:
		return errors.New("bench quota: --catchup-entries must be at least 1")
	case *catchupTimeout <= 0:
		return errors.New("bench quota: --catchup-timeout must be positive")
	}
	if set["parts"] {
		if opts.Parts, err = parseNames(*parts, "part", bench.QuotaParts); err != nil {
			return fmt.Errorf("bench quota: --parts: %w", err)
		}
		if *nodes < 2 && slices.ContainsFunc(opts.Parts, func(p bench.QuotaPart) bool { return p != bench.QuotaPartQuota }) {
			return errors.New("bench quota: --parts: replication, catchup and gossip need --nodes 2 or more")
		}
	} else {
		opts.Parts = nil // the default: every part that fits the number of nodes
	}
	opts.Nodes, opts.Skew = *nodes, *skew
	opts.TPM, opts.Clients, opts.Duration = *tpm, *clients, *duration
	opts.ReplicationSamples, opts.CatchupEntries, opts.CatchupTimeout = *samples, *catchupEntries, *catchupTimeout
	opts.Progress = stderr

	rep, err := bench.Quota(ctx, opts, stdout)
	if rep != nil && *out != "" {
		if werr := writeBenchJSON(*out, rep); werr != nil {
			return errors.Join(err, fmt.Errorf("bench quota: %w", werr))
		}
	}
	return err
}

// parseNames parses a comma-separated list such as "quota,replication" into
// names of known, none twice; what ("part", "mode") names them in errors.
func parseNames[T ~string](s, what string, known []T) ([]T, error) {
	var out []T
	for f := range strings.SplitSeq(s, ",") {
		v := T(strings.TrimSpace(f))
		switch {
		case v == "":
			continue
		case !slices.Contains(known, v):
			return nil, fmt.Errorf("unknown %s %q (known: %s)", what, v, joinNames(known))
		case slices.Contains(out, v):
			return nil, fmt.Errorf("%s %q given twice", what, v)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no %s given", what)
	}
	return out, nil
}

func joinNames[T ~string](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = string(x)
	}
	return strings.Join(s, ",")
}

// runBenchReverseProxy runs `llmgate bench reverse-proxy`, the overhead
// scenario's floor, until ctx is cancelled.
func runBenchReverseProxy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("llmgate bench reverse-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "listen `ADDR` (port 0 picks a free port)")
	upstream := fs.String("upstream", "", "upstream base `URL`, e.g. http://127.0.0.1:9000")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench reverse-proxy: unexpected argument %q", fs.Arg(0))
	}
	if *upstream == "" {
		return errors.New("bench reverse-proxy: --upstream is required")
	}
	return bench.ServeReverseProxy(ctx, *listen, *upstream, stdout)
}

// parseBenchRates parses "500,1000" into positive integers.
func parseBenchRates(s string) ([]int, error) {
	var rates []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		r, err := strconv.Atoi(f)
		if err != nil || r <= 0 {
			return nil, fmt.Errorf("%q is not a positive whole number of requests per second", f)
		}
		rates = append(rates, r)
	}
	if len(rates) == 0 {
		return nil, errors.New("no rate given")
	}
	return rates, nil
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// writeBenchJSON writes v as indented JSON to path.
func writeBenchJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	return nil
}

// cacheReport is what `llmgate bench cache --out` writes: one field per part.
type cacheReport struct {
	Index   *bench.CacheIndexReport   `json:"index,omitempty"`
	Memory  *bench.CacheMemoryReport  `json:"memory,omitempty"`
	Quality *bench.CacheQualityReport `json:"quality,omitempty"`
	Hit     *bench.CacheHitReport     `json:"end_to_end,omitempty"`
}

// runBenchCache runs `llmgate bench cache`: the index part (both graph
// implementations against exact search), the hit-quality part on the
// labelled pairs, and cache hits end to end through a node.
func runBenchCache(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	idef := bench.DefaultCacheIndexOptions()
	fs := flag.NewFlagSet("llmgate bench cache", flag.ContinueOnError)
	fs.SetOutput(stderr)
	parts := fs.String("parts", "index,memory,quality,hit", "parts to run, comma separated: index, memory, quality, hit")
	memEntries := fs.Int("memory-entries", 20000, "entries of the memory part")
	sizes := fs.String("sizes", joinInts(idef.Sizes), "index sizes, comma separated (1M takes tens of minutes and about 4 GB)")
	queries := fs.Int("queries", idef.Queries, "look-ups timed per index")
	vectors := fs.String("vectors", bench.DataPrompts, "index data: prompts (the local embedder on generated prompts) or random (unit vectors)")
	impls := fs.String("impls", strings.Join(idef.Impls, ","), "graph implementations: hnsw, coder-hnsw")
	efSearch := fs.Int("ef-search", 0, "HNSW search beam (0 = the default)")
	efConstruction := fs.Int("ef-construction", 0, "HNSW construction beam (0 = the default)")
	build := fs.String("build", bench.BuildAdd, "how the index part builds each index: add (adds only) or miss (each vector searched for, then added, as cache misses build it)")
	int8Walk := fs.Bool("index-int8", true, "HNSW walks int8 copies of the vectors instead of the float32 vectors (cache.index_int8); =false walks the float32 vectors")
	data := fs.String("data", "../shared/data", "`DIR` with paws_dev.tsv and gptcache_mock_data.json (index/testdata holds a 300-pair subset)")
	rate := fs.Int("rate", 500, "open-loop rate of the end-to-end part, requests/s")
	hitEntries := fs.Int("hit-entries", 2000, "answers cached before the end-to-end part measures")
	hitDuration := fs.Duration("hit-duration", 5*time.Second, "one measured run of the end-to-end part")
	hitRounds := fs.Int("hit-rounds", 3, "rounds of the end-to-end part; figures are medians")
	out := fs.String("out", "", "also write the report as JSON to `FILE`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench cache: unexpected argument %q", fs.Arg(0))
	}
	var rep cacheReport
	for part := range strings.SplitSeq(*parts, ",") {
		var err error
		switch strings.TrimSpace(part) {
		case "index":
			o := idef
			if o.Sizes, err = parseBenchRates(*sizes); err != nil {
				return fmt.Errorf("bench cache: --sizes: %w", err)
			}
			o.Queries, o.Progress, o.Data, o.Build = *queries, stderr, *vectors, *build
			o.Impls = strings.Split(*impls, ",")
			o.Params.EfSearch, o.Params.EfConstruction, o.Params.Float32Walk = *efSearch, *efConstruction, !*int8Walk
			rep.Index, err = bench.CacheIndex(ctx, o, stdout)
		case "quality":
			o := bench.CacheQualityOptions{DataDir: *data}
			if _, serr := os.Stat(filepath.Join(*data, bench.PAWSFile)); serr != nil {
				o = bench.CacheQualityOptions{DataDir: filepath.Join("index", "testdata"), PAWSFile: "paws_dev_300.tsv", GPTCacheFile: "gptcache_300.json"}
				fmt.Fprintf(stderr, "%s not found: measuring on the subset in %s\n", *data, o.DataDir)
			}
			rep.Quality, err = bench.CacheQuality(ctx, o, stdout)
		case "memory":
			rep.Memory, err = bench.CacheMemory(ctx, *memEntries, graph.Params{Float32Walk: !*int8Walk}, stdout)
		case "hit":
			rep.Hit, err = bench.CacheHit(ctx, bench.CacheHitOptions{Rate: *rate, Entries: *hitEntries, Duration: *hitDuration, Rounds: *hitRounds, Progress: stderr}, stdout)
		default:
			return fmt.Errorf("bench cache: unknown part %q (index, memory, quality, hit)", part)
		}
		if err != nil {
			return err
		}
	}
	if *out != "" {
		if err := writeBenchJSON(*out, rep); err != nil {
			return fmt.Errorf("bench cache: %w", err)
		}
	}
	return nil
}

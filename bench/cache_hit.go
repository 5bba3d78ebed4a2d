package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// CacheHitOptions configures the end-to-end cache-hit benchmark: HTTP in,
// embedding, look-up, guard and response out, through a real node.
type CacheHitOptions struct {
	// Executable is the llmgate binary. Default: the running binary.
	Executable string
	// Entries is how many answers are cached before measuring. Default 2000.
	Entries int
	// Rate is the open-loop request rate, requests per second. Default 500.
	Rate int
	// Duration is one measured run. Default 5s.
	Duration time.Duration
	// Rounds per kind of hit; the report gives medians. Default 3.
	Rounds int
	// StartTimeout bounds a child process's start. Default 30s.
	StartTimeout time.Duration
	// Progress receives one line per run. Nil: silent.
	Progress io.Writer
}

func (o CacheHitOptions) withDefaults() (CacheHitOptions, error) {
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("finding the llmgate executable: %w", err)
		}
		o.Executable = exe
	}
	if o.Entries <= 0 {
		o.Entries = 2000
	}
	if o.Rate <= 0 {
		o.Rate = 500
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 30 * time.Second
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o, nil
}

// CacheHitRow is one kind of request at the benchmark's rate.
type CacheHitRow struct {
	Kind   string  `json:"kind"` // exact hit, semantic hit, miss (upstream), floor
	Sent   int     `json:"sent"`
	Errors int     `json:"errors"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	// In the node, from its own histograms over all rounds (the upper
	// bound of the bucket holding the quantile, so "at most"): the whole
	// request (llmgate_request_duration_seconds, arrival to last byte),
	// the embedding and the index look-up with the guard. 0 when not
	// observed (the floor; embedding and look-up for exact hits and misses).
	NodeP50Ms   float64 `json:"node_p50_ms,omitempty"`
	NodeP99Ms   float64 `json:"node_p99_ms,omitempty"`
	EmbedP99Ms  float64 `json:"embed_p99_ms,omitempty"`
	LookupP99Ms float64 `json:"lookup_p99_ms,omitempty"`
	// NodeCPUMs is the node process's CPU time (user + system, from
	// /proc) over all rounds divided by the requests sent: the work one
	// request costs it, which waiting for a busy CPU does not inflate.
	NodeCPUMs float64 `json:"node_cpu_ms_per_request,omitempty"`
}

// CacheHitReport is the result of the end-to-end cache-hit benchmark.
type CacheHitReport struct {
	Entries  int           `json:"entries"`
	Rate     int           `json:"rate"`
	Duration string        `json:"duration"`
	Rounds   int           `json:"rounds"`
	Rows     []CacheHitRow `json:"rows"`
}

const cacheHitKey = "sk-bench-cache"

// CacheHit starts a mock upstream (20 ms to first token) and a node with the
// cache on, fills the cache with opts.Entries answers, then sends open-loop
// load of one cached prompt verbatim (exact tier), of the same prompt
// lower-cased without punctuation (normalised tier), of a rewording only the
// semantic tier catches (embedding, HNSW look-up, guard; no judge), and of
// the prompt with the cache off (a miss) for comparison.
func CacheHit(ctx context.Context, opts CacheHitOptions, w io.Writer) (*CacheHitReport, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("cache hit: %w", err)
	}
	dir, err := os.MkdirTemp("", "llmgate-bench-cache-*")
	if err != nil {
		return nil, fmt.Errorf("cache hit: %w", err)
	}
	defer os.RemoveAll(dir)
	mock, mockAddr, err := startMock(ctx, opts.Executable, opts.StartTimeout, "mock-upstream", "20ms")
	if err != nil {
		return nil, fmt.Errorf("cache hit: %w", err)
	}
	defer mock.Stop()
	n, err := startNode(ctx, opts.Executable, opts.StartTimeout, dir, "bench-cache", func(dataDir string, n *benchNode) string {
		return gatewayConfig(dataDir, n.listen, n.admin, n.gossip, mockAddr, cacheHitKey, "cache: {enabled: true}\n")
	})
	if err != nil {
		return nil, fmt.Errorf("cache hit: %w", err)
	}
	defer n.proc.Stop()
	// The floor: a mock answering at once, so the table separates what the
	// node's hit path costs from what HTTP on this machine costs anyway.
	floor, floorAddr, err := startMock(ctx, opts.Executable, opts.StartTimeout, "mock-upstream (floor)", "0")
	if err != nil {
		return nil, fmt.Errorf("cache hit: %w", err)
	}
	defer floor.Stop()

	client := NewLoadClient(256)
	defer client.CloseIdleConnections()
	url := "http://" + n.listen + "/v1/chat/completions"
	fill := &Request{URL: url, Header: cacheHitHeader(), Timeout: 30 * time.Second}
	// Filled by parallel workers: at 100k entries, one at a time behind a
	// 20 ms upstream would take over half an hour.
	next, failed := make(chan int), make(chan error, cacheHitFillers)
	var wg sync.WaitGroup
	for range cacheHitFillers {
		wg.Go(func() {
			r := *fill
			for i := range next {
				r.Body = cacheHitBody(cacheHitPrompt(i))
				if o := r.do(ctx, client, time.Now()); o.err != "" {
					failed <- fmt.Errorf("cache hit: filling entry %d: %s", i, o.err)
					return
				}
			}
		})
	}
	var ferr error
feed:
	for i := range opts.Entries {
		select {
		case next <- i:
		case ferr = <-failed:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if ferr == nil && len(failed) > 0 {
		ferr = <-failed
	}
	if ferr != nil {
		return nil, ferr
	}
	fmt.Fprintf(opts.Progress, "cached %d answers on %s\n", opts.Entries, n.listen)

	probe := cacheHitPrompt(opts.Entries / 2)
	// The semantic row needs a rewording that neither the exact nor the
	// normalised tier catches and the guard accepts: the first of these
	// the node serves from the semantic tier (no judge: none configured).
	var semantic *Request
	for _, p := range cacheHitRewordings(probe) {
		r := &Request{URL: url, Header: cacheHitHeader(), Body: cacheHitBody(p)}
		if got, tier, err := cacheState(ctx, client, r); err == nil && got == "hit" && tier == "semantic" {
			semantic = r
			break
		}
	}
	if semantic == nil {
		return nil, fmt.Errorf("cache hit: no rewording of %q is a semantic hit", probe)
	}
	kinds := []struct {
		name, want, tier string
		req              *Request
	}{
		{"exact hit", "hit", "exact", &Request{URL: url, Header: cacheHitHeader(), Body: cacheHitBody(probe)}},
		{"normalised hit", "hit", "normalized", &Request{URL: url, Header: cacheHitHeader(), Body: cacheHitBody(strings.ToLower(strings.TrimSuffix(probe, "?")))}},
		{"semantic hit (no judge)", "hit", "semantic", semantic},
		{"miss (cache off, 20 ms upstream)", "off", "", &Request{URL: url, Header: cacheHitHeader("x-llmgate-cache", "off"), Body: cacheHitBody(probe)}},
		{"floor: mock answering at once, direct", "", "", &Request{URL: "http://" + floorAddr + "/v1/chat/completions", Header: cacheHitHeader(), Body: cacheHitBody(probe)}},
	}
	for _, k := range kinds {
		if got, tier, err := cacheState(ctx, client, k.req); err != nil || got != k.want || tier != k.tier {
			return nil, fmt.Errorf("cache hit: probing %s: x-llmgate-cache %q tier %q (want %q %q), %v", k.name, got, tier, k.want, k.tier, err)
		}
	}
	rep := &CacheHitReport{Entries: opts.Entries, Rate: opts.Rate, Duration: opts.Duration.String(), Rounds: opts.Rounds}
	metricsURL := "http://" + n.admin + "/metrics"
	for _, k := range kinds {
		row := CacheHitRow{Kind: k.name}
		series := []string{`llmgate_request_duration_seconds{op="chat",route="gpt-4o-mini"`, `llmgate_cache_embed_duration_seconds{result="ok"`}
		if k.tier != "" {
			series = append(series, `llmgate_cache_lookup_duration_seconds{tier="`+k.tier+`"`)
		}
		before, err := scrapeHistograms(ctx, client, metricsURL, series...)
		if err != nil {
			return nil, fmt.Errorf("cache hit: %w", err)
		}
		cpuBefore, cpuErr := readCPU(n.proc.cmd.Process.Pid)
		var p50, p90, p99 []float64
		for round := range opts.Rounds {
			res, err := OpenLoop(ctx, client, k.req, float64(opts.Rate), opts.Duration)
			if err != nil {
				return nil, fmt.Errorf("cache hit: %s: %w", k.name, err)
			}
			row.Sent += res.Sent
			row.Errors += res.Errors
			p50, p90, p99 = append(p50, ms(res.Latency.P50)), append(p90, ms(res.Latency.P90)), append(p99, ms(res.Latency.P99))
			fmt.Fprintf(opts.Progress, "round %d/%d  %-34s p50 %s  p99 %s  errors %d\n", round+1, opts.Rounds, k.name,
				fmtMs(ms(res.Latency.P50)), fmtMs(ms(res.Latency.P99)), res.Errors)
		}
		row.P50Ms, row.P90Ms, row.P99Ms = Median(p50), Median(p90), Median(p99)
		if k.want != "" { // through the node
			after, err := scrapeHistograms(ctx, client, metricsURL, series...)
			if err != nil {
				return nil, fmt.Errorf("cache hit: %w", err)
			}
			bound := func(i int, q float64) float64 {
				if i >= len(series) {
					return 0
				}
				h := after[series[i]].minus(before[series[i]])
				if h.count() < float64(row.Sent)/2 { // not on this kind's path
					return 0
				}
				return 1000 * h.upperBound(q)
			}
			row.NodeP50Ms, row.NodeP99Ms = bound(0, 0.5), bound(0, 0.99)
			row.EmbedP99Ms, row.LookupP99Ms = bound(1, 0.99), bound(2, 0.99)
			if cpuAfter, err := readCPU(n.proc.cmd.Process.Pid); err == nil && cpuErr == nil && row.Sent > 0 {
				row.NodeCPUMs = ms(cpuAfter-cpuBefore) / float64(row.Sent)
			}
		}
		rep.Rows = append(rep.Rows, row)
	}
	if err := rep.WriteTable(w); err != nil {
		return rep, fmt.Errorf("cache hit: writing table: %w", err)
	}
	return rep, nil
}

func cacheHitHeader(kv ...string) http.Header {
	h := http.Header{"Content-Type": {"application/json"}, "Api-Key": {cacheHitKey}}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func cacheHitBody(prompt string) []byte {
	return fmt.Appendf(nil, `{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"user","content":%q}]}`, prompt)
}

// cacheHitPrompt is the i-th distinct prompt: realistic length, distinct words.
func cacheHitPrompt(i int) string {
	verbs := []string{"configure", "monitor", "rotate", "scale", "debug", "secure", "migrate", "back up"}
	things := []string{"retry policy", "connection pool", "access keys", "deployment quota", "log pipeline", "alert rules", "network rules", "token budget"}
	owners := []string{"billing service", "search cluster", "data warehouse", "mobile backend", "payments gateway", "analytics jobs", "identity provider", "chat assistant"}
	return fmt.Sprintf("How should our team %s the %s of the %s in region %d when traffic doubles during the quarterly launch?",
		verbs[i%len(verbs)], things[(i/len(verbs))%len(things)], owners[(i/(len(verbs)*len(things)))%len(owners)], i)
}

// cacheHitFillers is how many requests fill the cache at once.
const cacheHitFillers = 32

// cacheHitRewordings are rewordings of a cacheHitPrompt for the semantic
// row, most likely first.
func cacheHitRewordings(p string) []string {
	return []string{
		strings.Replace(p, "How should our team", "How should our group", 1),
		strings.Replace(p, "when traffic doubles", "when the traffic doubles", 1),
		strings.Replace(p, "traffic doubles", "traffic doubled", 1),
		strings.Replace(p, "quarterly launch", "quarterly release", 1),
		strings.Replace(p, "How should our team", "How should we", 1),
	}
}

// cacheState sends req once and returns its x-llmgate-cache and
// x-llmgate-cache-tier headers.
func cacheState(ctx context.Context, c *http.Client, r *Request) (state, tier string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, strings.NewReader(string(r.Body)))
	if err != nil {
		return "", "", err
	}
	req.Header = r.Header.Clone()
	resp, err := c.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return resp.Header.Get("x-llmgate-cache"), resp.Header.Get("x-llmgate-cache-tier"), nil
}

// WriteTable writes the report as an aligned text table.
func (r *CacheHitReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "\nend to end through a node (%d entries cached; open loop %d/s, %s × %d rounds, medians)\n", r.Entries, r.Rate, r.Duration, r.Rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "request\tp50\tp90\tp99\tsent\terrors\tin node p50 ≤\tin node p99 ≤\tembed p99 ≤\tlook-up p99 ≤\tnode CPU/request\t")
	bound := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return fmtMs(v)
	}
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t\n", row.Kind, fmtMs(row.P50Ms), fmtMs(row.P90Ms), fmtMs(row.P99Ms), row.Sent, row.Errors,
			bound(row.NodeP50Ms), bound(row.NodeP99Ms), bound(row.EmbedP99Ms), bound(row.LookupP99Ms), bound(row.NodeCPUMs))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "in node: the node's own histograms over all rounds (request arrival to last byte; embedding; index look-up and guard), the upper bound of the bucket holding the quantile;\nnode CPU/request: the node process's user + system CPU over all rounds / requests sent")
	return err
}

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// The cache parts of the quota benchmark: how fast a cache entry stored
// through one node reaches the others, and how fast a node that was down
// catches up on what it missed.

const (
	// clusterCacheConfig turns the cache on, with its defaults (TTL 1h,
	// vary_by consumer), in a node's config.
	clusterCacheConfig = "cache: {enabled: true}\n"
	// replicationConsumer and replicationKey are the replication part's
	// consumer; with the default vary_by the partition is the consumer name.
	replicationConsumer = "bench"
	replicationKey      = "sk-bench-replication"
	// replicationPoll is the time from one search of a sample to the next.
	replicationPoll = time.Millisecond
	// replicationWait is how long a sample waits for its entry on a node
	// before it counts it as missing.
	replicationWait = 10 * time.Second
	// exactDistance is the largest distance a search match may have to be
	// the entry itself (the same text embeds to the same vector).
	exactDistance = 1e-6
	// catchupConsumers is how many consumers (cache partitions) the catch-up
	// writes are spread over, so they land in different partitions and
	// shards rather than one graph.
	catchupConsumers = 8
	// catchupMaxTokens keeps the written answers small: the part measures
	// entries moved, not bytes.
	catchupMaxTokens = 8
	// catchupPoll is the interval between checks of the entry counts.
	catchupPoll = 100 * time.Millisecond
	// catchupSettle bounds the wait for node 0's entry count to reflect
	// every answer it gave (the store may finish after the answer).
	catchupSettle = 30 * time.Second
)

// DelayStats summarises durations, in milliseconds: nearest-rank
// percentiles, the maximum and the mean.
type DelayStats struct {
	Count  int     `json:"count"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
	MeanMs float64 `json:"mean_ms"`
}

// delayStats summarises samples; it does not modify them.
func delayStats(samples []time.Duration) DelayStats {
	s := slices.Clone(samples)
	p := Summarize(s)
	st := DelayStats{Count: p.Count, P50Ms: ms(p.P50), P90Ms: ms(p.P90), P99Ms: ms(p.P99), MaxMs: ms(p.Max)}
	if len(s) > 0 {
		var sum time.Duration
		for _, d := range s {
			sum += d
		}
		st.MeanMs = ms(sum / time.Duration(len(s)))
	}
	return st
}

// ReplicationReport is the result of the replication part.
type ReplicationReport struct {
	// Nodes is the cluster's size; every sample is written through From
	// and looked for on each of To.
	Nodes int      `json:"nodes"`
	From  string   `json:"from"`
	To    []string `json:"to"`
	// Samples is how many fresh entries were written (cache misses answered
	// by From); IntervalMs the time between their starts.
	Samples    int     `json:"samples"`
	IntervalMs float64 `json:"interval_ms"`
	// Found counts (entry, node) pairs where the entry was found; Missing
	// those where it was not within WaitS.
	Found   int     `json:"found"`
	Missing int     `json:"missing"`
	WaitS   float64 `json:"wait_s"`
	// Delay runs from the end of From's answer to the end of the first
	// search on the other node that finds the entry at distance 0 (an upper
	// bound, by at most one search's latency: the searches follow each
	// other about every millisecond).
	Delay DelayStats `json:"delay"`
	// Search is the latency of those searches: the resolution of Delay.
	Search DelayStats `json:"search"`
	Polls  int        `json:"polls"`
	// Errors counts writes that failed or were not stored (not a miss) and
	// searches that failed in transport.
	Errors     int    `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
}

// runReplication starts opts.Nodes nodes with the cache on and times, for
// opts.ReplicationSamples fresh prompts sent to node 0, how long each takes
// to be found by POST /admin/cache/search on every other node.
func runReplication(ctx context.Context, opts QuotaOptions, dir string, progress io.Writer) (*ReplicationReport, error) {
	mock, mockAddr, err := startMock(ctx, opts.Executable, opts.StartTimeout, "mock-upstream", "0")
	if err != nil {
		return nil, err
	}
	defer mock.Stop()
	consumers := []benchConsumer{{name: replicationConsumer, key: replicationKey}}
	nodes, err := startCluster(ctx, opts, dir, opts.Nodes, mockAddr, consumers, clusterCacheConfig)
	if err != nil {
		return nil, err
	}
	defer stopNodes(nodes)
	fmt.Fprintf(progress, "replication: %d node(s) %s; %d samples, one every %v\n",
		len(nodes), nodeAddrs(nodes), opts.ReplicationSamples, opts.ReplicationInterval)

	rep := &ReplicationReport{
		Nodes:      len(nodes),
		From:       nodes[0].name,
		Samples:    opts.ReplicationSamples,
		IntervalMs: ms(opts.ReplicationInterval),
		WaitS:      replicationWait.Seconds(),
	}
	for _, n := range nodes[1:] {
		rep.To = append(rep.To, n.name)
	}
	client := NewLoadClient(2 * len(nodes))
	defer client.CloseIdleConnections()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))

	// A first sample, not counted, fails fast on a node that does not cache
	// and warms connections and the embedders up.
	if _, err := replicationSample(ctx, client, nodes, replicationPrompt(rng, -1)); err != nil {
		return nil, fmt.Errorf("first sample: %w", err)
	}
	var delays, searches []time.Duration
	start := time.Now()
	for i := range opts.ReplicationSamples {
		if !sleepUntil(ctx, start.Add(time.Duration(i)*opts.ReplicationInterval)) {
			return nil, ctx.Err()
		}
		res, err := replicationSample(ctx, client, nodes, replicationPrompt(rng, i))
		var fatal *searchStatusError
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.As(err, &fatal):
			return nil, err
		case err != nil:
			rep.Errors++
			if rep.FirstError == "" {
				rep.FirstError = err.Error()
			}
			continue
		}
		for _, t := range res.targets {
			rep.Polls += t.polls
			searches = append(searches, t.searches...)
			if t.errors > 0 {
				rep.Errors += t.errors
				if rep.FirstError == "" {
					rep.FirstError = t.firstError
				}
			}
			if t.found {
				rep.Found++
				delays = append(delays, t.delay)
			} else {
				rep.Missing++
			}
		}
		if (i+1)%50 == 0 {
			d := delayStats(delays)
			fmt.Fprintf(progress, "  %d/%d samples: delay p50 %s p99 %s max %s, %d missing\n",
				i+1, opts.ReplicationSamples, fmtMs(d.P50Ms), fmtMs(d.P99Ms), fmtMs(d.MaxMs), rep.Missing)
		}
	}
	rep.Delay = delayStats(delays)
	rep.Search = delayStats(searches)
	return rep, nil
}

// replicationResult is one sample: its entry on each other node.
type replicationResult struct {
	targets []replicationTarget
}

// replicationTarget is one sample's entry as looked for on one node.
type replicationTarget struct {
	found      bool
	delay      time.Duration
	polls      int
	searches   []time.Duration
	errors     int
	firstError string
}

// searchStatusError is a search answered with an error status: the node
// cannot search (no cache, a bad request), which no waiting will change.
type searchStatusError struct {
	node string
	msg  string
}

func (e *searchStatusError) Error() string {
	return fmt.Sprintf("POST /admin/cache/search on %s: %s", e.node, e.msg)
}

// replicationSample sends prompt to nodes[0] as a fresh chat completion,
// then searches for it on every other node, concurrently, every
// replicationPoll until it is found or replicationWait has passed.
func replicationSample(ctx context.Context, c *http.Client, nodes []*benchNode, prompt string) (*replicationResult, error) {
	msgs := []chatMessage{{Role: "user", Content: prompt}}
	body, err := json.Marshal(map[string]any{"model": quotaModel, "max_tokens": 16, "messages": msgs})
	if err != nil {
		return nil, err
	}
	status, h, b, err := chatPost(ctx, c, "http://"+nodes[0].listen+"/v1/chat/completions", replicationKey, body)
	if err != nil {
		return nil, fmt.Errorf("writing through %s: %w", nodes[0].name, err)
	}
	written := time.Now()
	if status != http.StatusOK {
		return nil, fmt.Errorf("writing through %s: status %d: %s", nodes[0].name, status, strings.TrimSpace(string(b[:min(len(b), 200)])))
	}
	if got := h.Get("x-llmgate-cache"); got != "miss" {
		return nil, fmt.Errorf("writing through %s: x-llmgate-cache %q, want miss (a stored answer)", nodes[0].name, got)
	}
	search := map[string]any{"route": quotaModel, "partition": replicationConsumer, "messages": msgs}
	res := &replicationResult{targets: make([]replicationTarget, len(nodes)-1)}
	var fatal atomic.Pointer[searchStatusError]
	var wg sync.WaitGroup
	for i, n := range nodes[1:] {
		t := &res.targets[i]
		wg.Go(func() {
			deadline := written.Add(replicationWait)
			for ctx.Err() == nil && time.Now().Before(deadline) && fatal.Load() == nil {
				sent := time.Now()
				found, err := searchExact(ctx, c, n, search)
				now := time.Now()
				t.polls++
				t.searches = append(t.searches, now.Sub(sent))
				var se *searchStatusError
				switch {
				case errors.As(err, &se):
					fatal.CompareAndSwap(nil, se)
					return
				case err != nil:
					t.errors++
					if t.firstError == "" {
						t.firstError = err.Error()
					}
				case found:
					t.found, t.delay = true, now.Sub(written)
					return
				}
				sleepUntil(ctx, sent.Add(replicationPoll))
			}
		})
	}
	wg.Wait()
	if se := fatal.Load(); se != nil {
		return nil, se
	}
	return res, ctx.Err()
}

// searchExact reports whether POST /admin/cache/search on n finds an entry
// at distance 0 from the searched messages.
func searchExact(ctx context.Context, c *http.Client, n *benchNode, search any) (bool, error) {
	var out struct {
		Matches []struct {
			ID       string  `json:"id"`
			Distance float64 `json:"distance"`
		} `json:"matches"`
	}
	err := adminJSON(ctx, c, http.MethodPost, n, "/admin/cache/search", search, &out)
	var se *adminStatusError
	if errors.As(err, &se) {
		return false, &searchStatusError{node: n.name, msg: se.Error()}
	}
	if err != nil {
		return false, err
	}
	for _, m := range out.Matches {
		if m.Distance <= exactDistance {
			return true, nil
		}
	}
	return false, nil
}

// replicationPrompt is a fresh prompt: a random tag and words, so that no
// two samples embed alike.
func replicationPrompt(rng *rand.Rand, i int) string {
	return fmt.Sprintf("Replication probe %d tag %016x: %s?", i, rng.Uint64(), randomWords(rng, 24))
}

// randomWords returns n words of quotaWords picked by rng, space separated.
func randomWords(rng *rand.Rand, n int) string {
	words := make([]string, n)
	for i := range words {
		words[i] = quotaWords[rng.IntN(len(quotaWords))]
	}
	return strings.Join(words, " ")
}

// WriteTable writes the replication part's table.
func (r *ReplicationReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "\nreplication: %d fresh entries written through %s, each searched for on %s every ~%v (one sample every %s)\n",
		r.Samples, r.From, strings.Join(r.To, ", "), replicationPoll, fmtMs(r.IntervalMs))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-40s\tp50\tp90\tp99\tmax\tmean\tcount\t\n", "")
	for _, row := range []struct {
		name string
		d    DelayStats
	}{
		{"delay: answer on " + r.From + " to found elsewhere", r.Delay},
		{"search latency (resolution)", r.Search},
	} {
		fmt.Fprintf(tw, "%-40s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", row.name,
			fmtMs(row.d.P50Ms), fmtMs(row.d.P90Ms), fmtMs(row.d.P99Ms), fmtMs(row.d.MaxMs), fmtMs(row.d.MeanMs), row.d.Count)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "found %d, missing after %.0fs %d, searches %d, errors %d%s (target: p99 <= 1s)\n",
		r.Found, r.WaitS, r.Missing, r.Polls, r.Errors, firstErrorNote(r.FirstError))
	return err
}

// CatchupReport is the result of the catch-up part.
type CatchupReport struct {
	// Nodes is always 2: node 0 takes the writes, node 1 is the one down.
	Nodes     int `json:"nodes"`
	Consumers int `json:"consumers"`
	Clients   int `json:"clients"`
	// TimeoutS is how long a round waits for node 1 to catch up.
	TimeoutS float64 `json:"timeout_s"`
	// Rounds are the bulk outage (CatchupEntries written while node 1 was
	// down) and then the small one (CatchupSmallEntries), on the same nodes.
	Rounds []CatchupRound `json:"rounds"`
}

// CatchupRound is one outage of node 1: stopped, entries written through
// node 0, restarted with its data directory.
type CatchupRound struct {
	Name      string `json:"name"`
	Requested int    `json:"requested"`
	// Written counts the answers node 0 stored (cache misses); NotStored
	// those it answered without storing (a hit on an earlier entry, or not
	// cacheable); Errors the failed requests.
	Written    int    `json:"written"`
	NotStored  int    `json:"not_stored"`
	Errors     int    `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	// WriteSeconds is the time the writes took; WritesPerSecond the rate.
	WriteSeconds    float64 `json:"write_s"`
	WritesPerSecond float64 `json:"writes_per_s"`
	// StopError is node 1's exit status when it was stopped, if not clean.
	StopError string `json:"stop_error,omitempty"`
	// DownSeen reports whether node 0 listed node 1 as no longer alive
	// before the writes started.
	DownSeen bool `json:"down_seen"`
	// Node0Entries is node 0's entry count once the writes had settled;
	// Node1Before node 1's when it was stopped; Node1AtReady node 1's as
	// soon as it was ready again (what it loaded from its data directory so
	// far); Node1Final its last count.
	Node0Entries int64 `json:"node0_entries"`
	Node1Before  int64 `json:"node1_entries_before"`
	Node1AtReady int64 `json:"node1_entries_at_ready"`
	Node1Final   int64 `json:"node1_entries_final"`
	// ReloadedSeconds runs from the restart to node 1's count first
	// reaching Node1Before: its own data directory loaded (entries fetched
	// meanwhile count too, so it is a lower bound).
	ReloadedSeconds float64 `json:"reloaded_s"`
	// LongestStallS is the longest time node 1's count stood still while
	// it had not caught up: a catch-up that pauses between rounds shows
	// here.
	LongestStallS float64 `json:"longest_stall_s"`
	// Fetched is what node 1 counted as fetched from its peer by catch-up
	// (llmgate_cluster_cache_sync_entries_total after the round), and Syncs
	// its catch-up rounds by result (llmgate_cluster_cache_syncs_total);
	// Fetched is -1 when /metrics does not have them.
	Fetched int64            `json:"fetched"`
	Syncs   map[string]int64 `json:"syncs,omitempty"`
	// Timeline is node 1's entry count about every second from the restart.
	Timeline []CatchupPoint `json:"timeline,omitempty"`
	// SamePorts reports whether node 1 came back on its old ports.
	SamePorts bool `json:"same_ports"`
	// ReadySeconds runs from node 1's restart to its /readyz answering 200;
	// CatchupSeconds to its entry count equalling node 0's (Converged), or
	// to giving up.
	ReadySeconds   float64 `json:"ready_s"`
	CatchupSeconds float64 `json:"catchup_s"`
	Converged      bool    `json:"converged"`
	// EntriesPerSecond is the entries node 1 lacked (Node0Entries -
	// Node1Before) over CatchupSeconds.
	EntriesPerSecond float64 `json:"entries_per_s"`
	// Note says why a round did not run or what went oddly.
	Note string `json:"note,omitempty"`
}

// CatchupPoint is node 1's entry count some seconds after its restart.
type CatchupPoint struct {
	S       float64 `json:"s"`
	Entries int64   `json:"entries"`
}

// runCatchup starts two nodes with the cache on, then twice stops node 1,
// writes entries through node 0, restarts node 1 with the same name and
// data directory, and times until node 1 holds as many entries as node 0:
// once with opts.CatchupEntries, once with opts.CatchupSmallEntries.
func runCatchup(ctx context.Context, opts QuotaOptions, dir string, progress io.Writer) (*CatchupReport, error) {
	mock, mockAddr, err := startMock(ctx, opts.Executable, opts.StartTimeout, "mock-upstream", "0")
	if err != nil {
		return nil, err
	}
	defer mock.Stop()
	consumers := make([]benchConsumer, catchupConsumers)
	for i := range consumers {
		consumers[i] = benchConsumer{name: fmt.Sprintf("bench-c%d", i+1), key: fmt.Sprintf("sk-bench-catchup-%d", i+1)}
	}
	nodes, err := startCluster(ctx, opts, dir, 2, mockAddr, consumers, clusterCacheConfig)
	if err != nil {
		return nil, err
	}
	defer stopNodes(nodes)
	fmt.Fprintf(progress, "catch-up: 2 nodes %s\n", nodeAddrs(nodes))

	rep := &CatchupReport{Nodes: 2, Consumers: catchupConsumers, Clients: opts.CatchupClients, TimeoutS: opts.CatchupTimeout.Seconds()}
	for _, round := range []struct {
		name    string
		entries int
	}{{"bulk", opts.CatchupEntries}, {"small", opts.CatchupSmallEntries}} {
		if len(rep.Rounds) > 0 && !rep.Rounds[len(rep.Rounds)-1].Converged {
			rep.Rounds = append(rep.Rounds, CatchupRound{Name: round.name, Requested: round.entries,
				Note: "not run: node 1 never caught up in the previous round"})
			continue
		}
		r, err := catchupRound(ctx, opts, nodes, consumers, round.name, round.entries, progress)
		if r != nil {
			rep.Rounds = append(rep.Rounds, *r)
		}
		if err != nil {
			return rep, fmt.Errorf("round %s: %w", round.name, err)
		}
	}
	return rep, nil
}

// catchupRound runs one outage of nodes[1].
func catchupRound(ctx context.Context, opts QuotaOptions, nodes []*benchNode, consumers []benchConsumer, name string, entries int, progress io.Writer) (*CatchupRound, error) {
	a, b := nodes[0], nodes[1]
	r := &CatchupRound{Name: name, Requested: entries}
	admin := &http.Client{Timeout: 5 * time.Second}
	defer admin.CloseIdleConnections()

	var err error
	if r.Node1Before, err = cacheEntries(ctx, admin, b); err != nil {
		return r, err
	}
	aBefore, err := cacheEntries(ctx, admin, a)
	if err != nil {
		return r, err
	}
	b.proc.Stop()
	r.StopError = b.proc.unclean()
	if err := waitMemberGone(ctx, admin, []*benchNode{a}, b.name, opts.StartTimeout); err == nil {
		r.DownSeen = true
	} else if ctx.Err() != nil {
		return r, ctx.Err()
	}
	fmt.Fprintf(progress, "catch-up %s: %s stopped (%d entries); writing %d entries through %s with %d clients\n",
		name, b.name, r.Node1Before, entries, a.name, opts.CatchupClients)

	w := writeEntries(ctx, a, consumers, name, entries, opts.CatchupClients, progress)
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	r.Written, r.NotStored, r.Errors, r.FirstError = w.written, w.notStored, w.errors, w.firstError
	r.WriteSeconds = w.elapsed.Seconds()
	if w.elapsed > 0 {
		r.WritesPerSecond = float64(w.written) / w.elapsed.Seconds()
	}

	// The answer may go out before the store finishes: wait for node 0's
	// count to show every stored answer, then take it as the target.
	want := aBefore + int64(r.Written)
	settle := time.Now().Add(catchupSettle)
	for {
		if r.Node0Entries, err = cacheEntries(ctx, admin, a); err != nil {
			return r, err
		}
		if r.Node0Entries >= want || time.Now().After(settle) {
			break
		}
		if !sleepUntil(ctx, time.Now().Add(catchupPoll)) {
			return r, ctx.Err()
		}
	}
	if r.Node0Entries != want {
		r.Note = fmt.Sprintf("%s holds %d entries, expected %d (%d before + %d stored)", a.name, r.Node0Entries, want, aBefore, r.Written)
	}
	fmt.Fprintf(progress, "catch-up %s: %d written in %.1fs (%.0f/s), %s holds %d; restarting %s\n",
		name, r.Written, r.WriteSeconds, r.WritesPerSecond, a.name, r.Node0Entries, b.name)

	oldListen := b.listen
	restarted := time.Now()
	// The restart's own wait covers loading a large data directory; the
	// catch-up clock runs from here either way.
	if err := b.restart(ctx, opts.Executable, max(opts.StartTimeout, opts.CatchupTimeout)); err != nil {
		return r, err
	}
	r.ReadySeconds = time.Since(restarted).Seconds()
	r.SamePorts = b.listen == oldListen
	r.Node1AtReady, _ = cacheEntries(ctx, admin, b)

	deadline := restarted.Add(opts.CatchupTimeout)
	lastReport, lastPoint := time.Now(), time.Time{}
	lastChange, lastCount := restarted, int64(-1)
	reloaded := false
	for {
		an, aErr := cacheEntries(ctx, admin, a)
		bn, bErr := cacheEntries(ctx, admin, b)
		now := time.Now()
		since := now.Sub(restarted)
		if bErr == nil {
			r.Node1Final = bn
			if bn != lastCount {
				lastChange, lastCount = now, bn
			}
			if !reloaded && bn >= r.Node1Before {
				reloaded, r.ReloadedSeconds = true, since.Seconds()
			}
			if now.Sub(lastPoint) >= time.Second {
				lastPoint = now
				r.Timeline = append(r.Timeline, CatchupPoint{S: math.Round(since.Seconds()*10) / 10, Entries: bn})
			}
		}
		r.LongestStallS = max(r.LongestStallS, now.Sub(lastChange).Seconds())
		if aErr == nil && bErr == nil && bn == an && an >= r.Node0Entries {
			r.Converged = true
			r.CatchupSeconds = since.Seconds()
			break
		}
		if now.After(deadline) {
			r.CatchupSeconds = since.Seconds()
			r.Note = strings.TrimSpace(r.Note + fmt.Sprintf(" not caught up; end of %s's stderr: %s", b.name, tailLines(b.proc.stderr.Tail(), 5)))
			break
		}
		if now.Sub(lastReport) >= 5*time.Second {
			lastReport = now
			fmt.Fprintf(progress, "  %5.1fs after restart: %s %d entries, %s %d\n", now.Sub(restarted).Seconds(), b.name, bn, a.name, an)
		}
		if !sleepUntil(ctx, now.Add(catchupPoll)) {
			return r, ctx.Err()
		}
	}
	if missed := r.Node0Entries - r.Node1Before; r.CatchupSeconds > 0 && missed > 0 {
		r.EntriesPerSecond = float64(missed) / r.CatchupSeconds
	}
	r.Fetched, r.Syncs = syncMetrics(ctx, admin, b)
	fmt.Fprintf(progress, "catch-up %s: %s ready after %.1fs with %d entries; converged %v after %.1fs (%d of %d)\n",
		name, b.name, r.ReadySeconds, r.Node1AtReady, r.Converged, r.CatchupSeconds, r.Node1Final, r.Node0Entries)
	return r, nil
}

// syncMetrics reads n's catch-up counters from GET /metrics: entries
// fetched (-1 if absent) and rounds by result.
func syncMetrics(ctx context.Context, c *http.Client, n *benchNode) (int64, map[string]int64) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.admin+"/metrics", nil)
	if err != nil {
		return -1, nil
	}
	resp, err := c.Do(req)
	if err != nil {
		return -1, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return -1, nil
	}
	return parseSyncMetrics(string(b))
}

// parseSyncMetrics picks the catch-up counters out of Prometheus text.
func parseSyncMetrics(text string) (fetched int64, syncs map[string]int64) {
	fetched = -1
	for line := range strings.Lines(text) {
		name, val, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch {
		case name == "llmgate_cluster_cache_sync_entries_total":
			fetched = int64(v)
		case strings.HasPrefix(name, `llmgate_cluster_cache_syncs_total{result="`):
			result := strings.TrimSuffix(strings.TrimPrefix(name, `llmgate_cluster_cache_syncs_total{result="`), `"}`)
			if syncs == nil {
				syncs = make(map[string]int64)
			}
			syncs[result] = int64(v)
		}
	}
	return fetched, syncs
}

// tailLines returns the last n non-empty lines of s, joined by " | ".
func tailLines(s string, n int) string {
	var lines []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return "(empty)"
	}
	return strings.Join(lines[max(len(lines)-n, 0):], " | ")
}

// cacheEntries reads the entry count of GET /admin/cache/stats on n.
func cacheEntries(ctx context.Context, c *http.Client, n *benchNode) (int64, error) {
	var st struct {
		Entries int64 `json:"entries"`
	}
	if err := adminJSON(ctx, c, http.MethodGet, n, "/admin/cache/stats", nil, &st); err != nil {
		return 0, err
	}
	return st.Entries, nil
}

// entryWrites is what writeEntries did.
type entryWrites struct {
	written, notStored, errors int
	firstError                 string
	elapsed                    time.Duration
}

// writeEntries sends count fresh prompts to n, spread over consumers, with
// clients concurrent clients, and counts the answers n stored.
func writeEntries(ctx context.Context, n *benchNode, consumers []benchConsumer, round string, count, clients int, progress io.Writer) entryWrites {
	client := NewLoadClient(clients)
	defer client.CloseIdleConnections()
	url := "http://" + n.listen + "/v1/chat/completions"
	var next, written, notStored, failed atomic.Int64
	var firstErr atomic.Pointer[string]
	fail := func(counter *atomic.Int64, msg string) {
		counter.Add(1)
		firstErr.CompareAndSwap(nil, &msg)
	}
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	if progress != io.Discard {
		wg.Go(func() {
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					fmt.Fprintf(progress, "  %5.0fs  %d of %d written\n", time.Since(start).Seconds(), written.Load(), count)
				}
			}
		})
	}
	var writers sync.WaitGroup
	for w := range clients {
		writers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w)+1, uint64(len(round))))
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= count {
					return
				}
				c := consumers[i%len(consumers)]
				body, err := json.Marshal(map[string]any{
					"model":      quotaModel,
					"max_tokens": catchupMaxTokens,
					"messages":   []chatMessage{{Role: "user", Content: catchupPrompt(rng, round, i)}},
				})
				if err != nil {
					fail(&failed, err.Error())
					continue
				}
				status, h, b, err := chatPost(ctx, client, url, c.key, body)
				switch {
				case err != nil:
					fail(&failed, err.Error())
				case status != http.StatusOK:
					fail(&failed, fmt.Sprintf("status %d: %s", status, strings.TrimSpace(string(b[:min(len(b), 200)]))))
				case h.Get("x-llmgate-cache") != "miss":
					fail(&notStored, fmt.Sprintf("x-llmgate-cache %q, want miss", h.Get("x-llmgate-cache")))
				default:
					written.Add(1)
				}
			}
		})
	}
	writers.Wait()
	elapsed := time.Since(start)
	close(done)
	wg.Wait()
	out := entryWrites{written: int(written.Load()), notStored: int(notStored.Load()), errors: int(failed.Load()), elapsed: elapsed}
	if p := firstErr.Load(); p != nil {
		out.firstError = *p
	}
	return out
}

// catchupPrompt is the i-th prompt of a round: a tag unique to the round
// and i, and random words, so no two embed closely enough to hit.
func catchupPrompt(rng *rand.Rand, round string, i int) string {
	return fmt.Sprintf("Catch-up %s entry %d tag %016x: %s?", round, i, rng.Uint64(), randomWords(rng, 20))
}

// fmtSyncs formats catch-up rounds by result: "fetched 1, in_sync 2".
func fmtSyncs(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	keys := slices.Sorted(maps.Keys(m))
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(s, ", ")
}

// WriteTable writes the catch-up part's table.
func (r *CatchupReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "\ncatch-up: node 1 of 2 stopped (SIGTERM), entries written through node 0 by %d clients over %d consumers, node 1 restarted with its data dir\n",
		r.Clients, r.Consumers)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "round\twritten\twrite time\twrites/s\tnode 0 entries\tnode 1 before\treloaded after\tcaught up after\tentries/s\tlongest stall\tfetched\tsyncs\t\n")
	var notes []string
	for _, c := range r.Rounds {
		if c.Note != "" {
			notes = append(notes, c.Name+": "+c.Note)
		}
		if c.FirstError != "" {
			notes = append(notes, fmt.Sprintf("%s: %d errors, %d not stored; first: %s", c.Name, c.Errors, c.NotStored, c.FirstError))
		}
		if c.StopError != "" {
			notes = append(notes, c.Name+": node 1 exited with "+c.StopError)
		}
		if !c.DownSeen && c.Written > 0 {
			notes = append(notes, c.Name+": node 0 still listed node 1 as alive when the writes began")
		}
		if c.Written == 0 && c.Note != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t\n", c.Name)
			continue
		}
		caught := fmt.Sprintf("%.1fs", c.CatchupSeconds)
		if !c.Converged {
			caught = fmt.Sprintf("not after %.0fs", c.CatchupSeconds)
		}
		fetched := "n/a"
		if c.Fetched >= 0 {
			fetched = strconv.FormatInt(c.Fetched, 10)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1fs\t%.0f\t%d\t%d\t%.1fs\t%s\t%.0f\t%.1fs\t%s\t%s\t\n", c.Name, c.Written, c.WriteSeconds, c.WritesPerSecond,
			c.Node0Entries, c.Node1Before, c.ReloadedSeconds, caught, c.EntriesPerSecond, c.LongestStallS, fetched, fmtSyncs(c.Syncs))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "caught up: node 1's /admin/cache/stats entries equal node 0's, polled every %v from the restart (target: <= 30s for 100k);\n"+
		"reloaded: node 1's count back to what it held when stopped; fetched, syncs: node 1's own catch-up counters (/metrics).\n", catchupPoll); err != nil {
		return err
	}
	if len(notes) > 0 {
		if _, err := fmt.Fprintf(w, "notes:\n  %s\n", strings.Join(notes, "\n  ")); err != nil {
			return err
		}
	}
	return nil
}

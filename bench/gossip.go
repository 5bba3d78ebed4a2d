package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

const (
	// gossipRate and gossipDuration are the load of the gossip part: the
	// target says what the cluster may cost a node at 1,000 req/s.
	gossipRate     = 1000
	gossipDuration = 20 * time.Second
	gossipWarmup   = 3 * time.Second
	gossipConsumer = "bench-gossip"
	gossipKey      = "sk-bench-gossip"
	// gossipTPM is high enough never to refuse, so every request is counted
	// and its usage exchanged, none refused.
	gossipTPM = 1_000_000_000
	// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times; 100 on
	// every Linux architecture Go supports.
	clockTicks = 100
)

// GossipReport is what the cluster costs a node in CPU, at a fixed request
// rate on one consumer with a TPM limit (its usage is exchanged) and the
// cache off (replication is the replication part's). CPU is a share of one
// core over the load interval.
type GossipReport struct {
	Rate      float64 `json:"rate"`
	DurationS float64 `json:"duration_s"`
	// Alone is node 0 with no peer; Sender is node 0 with a peer, under the
	// same load; Receiver is the peer, which gets no requests, so that all
	// it does is cluster work (membership, merging node 0's usage).
	Alone    float64 `json:"alone_cpu"`
	Sender   float64 `json:"sender_cpu"`
	Receiver float64 `json:"receiver_cpu"`
	// SenderExtra is Sender − Alone: what having a peer costs the node that
	// serves the load (noisy: two runs' difference).
	SenderExtra float64 `json:"sender_extra_cpu"`
	Errors      int     `json:"errors"`
}

// runGossip measures the CPU the cluster costs: once with one node, once with
// two, each under the same open-loop load on node 0.
func runGossip(ctx context.Context, opts QuotaOptions, dir string, progress io.Writer) (*GossipReport, error) {
	mock, mockAddr, err := startMock(ctx, opts.Executable, opts.StartTimeout, "mock-upstream", "0")
	if err != nil {
		return nil, err
	}
	defer mock.Stop()
	rep := &GossipReport{Rate: gossipRate, DurationS: gossipDuration.Seconds()}
	consumers := []benchConsumer{{name: gossipConsumer, key: gossipKey, tpm: gossipTPM}}
	for _, count := range []int{1, 2} {
		nodes, err := startCluster(ctx, opts, fmt.Sprintf("%s/%d", dir, count), count, mockAddr, consumers, "")
		if err != nil {
			return nil, err
		}
		cpu, errs, err := gossipLoad(ctx, nodes, progress)
		stopNodes(nodes)
		if err != nil {
			return nil, err
		}
		rep.Errors += errs
		if count == 1 {
			rep.Alone = cpu[0]
		} else {
			rep.Sender, rep.Receiver = cpu[0], cpu[1]
		}
	}
	rep.SenderExtra = rep.Sender - rep.Alone
	return rep, nil
}

// gossipLoad drives node 0 at gossipRate and returns each node's CPU over
// the loaded interval, as a share of one core.
func gossipLoad(ctx context.Context, nodes []*benchNode, progress io.Writer) ([]float64, int, error) {
	client := NewLoadClient(64)
	defer client.CloseIdleConnections()
	req := &Request{
		URL:    "http://" + nodes[0].listen + "/v1/chat/completions",
		Header: http.Header{"Content-Type": {"application/json"}, "Api-Key": {gossipKey}},
		Body:   []byte(`{"model":"` + quotaModel + `","max_tokens":8,"messages":[{"role":"user","content":"How much does the cluster cost a node?"}]}`),
	}
	if _, err := OpenLoop(ctx, client, req, gossipRate, gossipWarmup); err != nil {
		return nil, 0, fmt.Errorf("warm-up: %w", err)
	}
	before := make([]time.Duration, len(nodes))
	for i, n := range nodes {
		t, err := readCPU(n.proc.PID())
		if err != nil {
			return nil, 0, err
		}
		before[i] = t
	}
	start := time.Now()
	res, err := OpenLoop(ctx, client, req, gossipRate, gossipDuration)
	if err != nil {
		return nil, 0, err
	}
	elapsed := time.Since(start)
	cpu := make([]float64, len(nodes))
	for i, n := range nodes {
		t, err := readCPU(n.proc.PID())
		if err != nil {
			return nil, 0, err
		}
		cpu[i] = (t - before[i]).Seconds() / elapsed.Seconds()
	}
	fmt.Fprintf(progress, "gossip: %d node(s), %d req/s for %v: %d ok, %d errors, CPU %v\n",
		len(nodes), gossipRate, gossipDuration, res.OK, res.Errors, cpu)
	return cpu, res.Errors, nil
}

// readCPU returns the user plus system CPU time a process has used.
func readCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the CPU time of pid %d: %w", pid, err)
	}
	return parseProcStat(string(b))
}

// parseProcStat returns utime+stime from the text of /proc/PID/stat. The
// command name (field 2) may hold spaces, so fields count from its ")".
func parseProcStat(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parsing /proc stat %q: no command name", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("parsing /proc stat: %d fields", len(f))
	}
	var ticks int64
	for _, x := range f[11:13] {
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing /proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// WriteTable prints the gossip part.
func (r *GossipReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "\ngossip cost: %.0f req/s for %.0fs on node 0, one consumer with a TPM (its usage exchanged), cache off; CPU as a share of one core\n", r.Rate, r.DurationS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  node 0 alone\t%.1f%%\n", 100*r.Alone)
	fmt.Fprintf(tw, "  node 0 with a peer\t%.1f%%\t(+%.1f%% for the cluster)\n", 100*r.Sender, 100*r.SenderExtra)
	fmt.Fprintf(tw, "  the peer (no requests: cluster work only)\t%.1f%%\n", 100*r.Receiver)
	fmt.Fprintf(tw, "  request errors\t%d\n", r.Errors)
	fmt.Fprintln(tw, "  target: <= 5% of one core per node")
	return tw.Flush()
}

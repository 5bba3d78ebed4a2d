package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/internal/tokens"
)

// QuotaMode says how the quota scenario's clients size their requests.
type QuotaMode string

const (
	// QuotaModeMaxTokens: every request names max_tokens (uniformly 20..300),
	// so the node reserves prompt + max_tokens and the mock answers exactly
	// that long: reservations match the settled charge.
	QuotaModeMaxTokens QuotaMode = "max_tokens"
	// QuotaModeNoMaxTokens: requests name no max_tokens, so the node reserves
	// its default completion allowance (quotaDefaultAllowance) while the mock
	// answers far shorter: reservations are much larger than the settled
	// charge, which is what exercises settlement.
	QuotaModeNoMaxTokens QuotaMode = "no_max_tokens"
)

// QuotaModes lists the modes in the order they run by default.
var QuotaModes = []QuotaMode{QuotaModeMaxTokens, QuotaModeNoMaxTokens}

const (
	quotaConsumer = "bench"
	quotaKey      = "sk-bench-quota"
	quotaModel    = "gpt-4o-mini"
	// quotaDefaultAllowance is the node's completion allowance for requests
	// without max_tokens; written into the config so it is known here.
	quotaDefaultAllowance = 1024
	// quotaWindow is the TPM window (SPEC §5).
	quotaWindow = time.Minute
	// quotaMaxBackoff caps how long a refused client sleeps before retrying.
	quotaMaxBackoff = 2 * time.Second
	// quotaErrorBackoff is how long a client pauses after an error other
	// than a TPM refusal, so a broken node is not hammered.
	quotaErrorBackoff = 100 * time.Millisecond
	// quotaMinWords and quotaMaxWords bound a prompt's user message.
	quotaMinWords, quotaMaxWords = 20, 200
	// quotaMinMaxTokens and quotaMaxMaxTokens bound max_tokens in max_tokens mode.
	quotaMinMaxTokens, quotaMaxMaxTokens = 20, 300
)

// QuotaPart is one part of the quota benchmark. Each part starts its own
// mock upstream and fresh nodes.
type QuotaPart string

const (
	// QuotaPartQuota: many clients of one consumer spread over the nodes;
	// the most tokens the cluster admits in any sliding minute against the
	// TPM, and the refusals it made while it still had room.
	QuotaPartQuota QuotaPart = "quota"
	// QuotaPartReplication: how long a cache entry stored through one node
	// takes to be found on the others. Needs two nodes or more.
	QuotaPartReplication QuotaPart = "replication"
	// QuotaPartCatchup: how long a node that was down takes to catch up on
	// the cache entries written while it was. Needs two nodes or more (it
	// always runs two).
	QuotaPartCatchup QuotaPart = "catchup"
	// QuotaPartGossip: the CPU the cluster costs a node at 1,000 req/s
	// (it always runs one node, then two).
	QuotaPartGossip QuotaPart = "gossip"
)

// QuotaParts lists the parts in the order they run by default.
var QuotaParts = []QuotaPart{QuotaPartQuota, QuotaPartReplication, QuotaPartCatchup, QuotaPartGossip}

// QuotaOptions configures the quota benchmark. Zero fields take the defaults
// of DefaultQuotaOptions.
type QuotaOptions struct {
	// Executable is the llmgate binary started for the mock upstream and the
	// nodes. Default: the running binary.
	Executable string
	// Nodes is the number of clustered gateway nodes (node i > 0 joins node
	// 0). Default 2; 1 runs a node alone, and then only the quota part.
	Nodes int
	// TPM is the consumer's tokens-per-minute limit. Default 20000.
	TPM int64
	// Clients is the number of concurrent closed-loop clients of the one
	// consumer. Default 32.
	Clients int
	// Skew, when above 0, is the share of the clients sent to node 0 (at
	// most 1); the others are spread round-robin over the other nodes. 0
	// spreads all clients round-robin: client i on node i mod Nodes.
	Skew float64
	// Duration is the length of the run of each mode. It should exceed the
	// 60 s window well, so that the window is full several times over.
	// Default 150s.
	Duration time.Duration
	// Modes are run one after the other, each against fresh nodes (so one
	// mode's tokens do not sit in the next one's window). Default: both,
	// max_tokens then no_max_tokens.
	Modes []QuotaMode
	// Parts are run in the order given. Default: all of QuotaParts with two
	// nodes or more, the quota part alone with one.
	Parts []QuotaPart
	// ReplicationSamples is how many fresh cache entries the replication
	// part times. Default 300.
	ReplicationSamples int
	// ReplicationInterval is the time from one replication sample's start
	// to the next one's (a sample that takes longer delays the next).
	// Default 100ms.
	ReplicationInterval time.Duration
	// CatchupEntries is how many cache entries the catch-up part writes
	// while a node is down. Default 100000.
	CatchupEntries int
	// CatchupSmallEntries is how many it writes in the second, small
	// outage. Default 100.
	CatchupSmallEntries int
	// CatchupClients is the number of concurrent clients writing them.
	// Default 32.
	CatchupClients int
	// CatchupTimeout bounds the wait for a restarted node to catch up.
	// Default 10m.
	CatchupTimeout time.Duration
	// StartTimeout bounds how long a child process may take to come up, and
	// a cluster to form. Default 30s.
	StartTimeout time.Duration
	// Progress receives a line every few seconds as the benchmark goes.
	// Nil: silent.
	Progress io.Writer
}

// DefaultQuotaOptions returns the defaults: two nodes, TPM 20000, 32 clients
// spread evenly, both modes for 150s each, then 300 replication samples and
// a catch-up of 100000 entries; about ten minutes in all.
func DefaultQuotaOptions() QuotaOptions {
	return QuotaOptions{
		Nodes:               2,
		TPM:                 20000,
		Clients:             32,
		Duration:            150 * time.Second,
		Modes:               slices.Clone(QuotaModes),
		ReplicationSamples:  300,
		ReplicationInterval: 100 * time.Millisecond,
		CatchupEntries:      100000,
		CatchupSmallEntries: 100,
		CatchupClients:      32,
		CatchupTimeout:      10 * time.Minute,
		StartTimeout:        30 * time.Second,
	}
}

func (o QuotaOptions) withDefaults() (QuotaOptions, error) {
	def := DefaultQuotaOptions()
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("finding the llmgate binary: %w", err)
		}
		o.Executable = exe
	}
	o.Nodes = cmp.Or(o.Nodes, def.Nodes)
	o.TPM = cmp.Or(o.TPM, def.TPM)
	o.Clients = cmp.Or(o.Clients, def.Clients)
	o.Duration = cmp.Or(o.Duration, def.Duration)
	o.ReplicationSamples = cmp.Or(o.ReplicationSamples, def.ReplicationSamples)
	o.ReplicationInterval = cmp.Or(o.ReplicationInterval, def.ReplicationInterval)
	o.CatchupEntries = cmp.Or(o.CatchupEntries, def.CatchupEntries)
	o.CatchupSmallEntries = cmp.Or(o.CatchupSmallEntries, def.CatchupSmallEntries)
	o.CatchupClients = cmp.Or(o.CatchupClients, def.CatchupClients)
	o.CatchupTimeout = cmp.Or(o.CatchupTimeout, def.CatchupTimeout)
	o.StartTimeout = cmp.Or(o.StartTimeout, def.StartTimeout)
	if len(o.Modes) == 0 {
		o.Modes = def.Modes
	}
	if len(o.Parts) == 0 {
		o.Parts = slices.Clone(QuotaParts)
		if o.Nodes < 2 {
			o.Parts = []QuotaPart{QuotaPartQuota}
		}
	}
	switch {
	case o.Nodes < 0:
		return o, fmt.Errorf("nodes %d is negative", o.Nodes)
	case o.TPM < 0:
		return o, fmt.Errorf("tpm %d is negative", o.TPM)
	case o.Clients < 0:
		return o, fmt.Errorf("clients %d is negative", o.Clients)
	case o.Skew < 0 || o.Skew > 1 || math.IsNaN(o.Skew):
		return o, fmt.Errorf("skew %v is not a share from 0 to 1", o.Skew)
	case o.ReplicationSamples < 0, o.CatchupEntries < 0, o.CatchupSmallEntries < 0, o.CatchupClients < 0:
		return o, errors.New("counts must be positive")
	case o.Duration < 0, o.StartTimeout < 0, o.ReplicationInterval < 0, o.CatchupTimeout < 0:
		return o, errors.New("durations must be positive")
	}
	for _, m := range o.Modes {
		if !slices.Contains(QuotaModes, m) {
			return o, fmt.Errorf("unknown mode %q (known: %s, %s)", m, QuotaModeMaxTokens, QuotaModeNoMaxTokens)
		}
	}
	for _, p := range o.Parts {
		switch {
		case !slices.Contains(QuotaParts, p):
			return o, fmt.Errorf("unknown part %q (known: %s)", p, joinParts(QuotaParts))
		case p != QuotaPartQuota && o.Nodes < 2:
			return o, fmt.Errorf("part %s needs two nodes or more (nodes is %d)", p, o.Nodes)
		}
	}
	return o, nil
}

// QuotaReport is the result of the quota benchmark.
type QuotaReport struct {
	StartedAt      time.Time `json:"started_at"`
	ElapsedSeconds float64   `json:"elapsed_s"`
	CPUs           int       `json:"cpus"`
	// Nodes is the number of clustered gateway nodes the clients were
	// spread over.
	Nodes int         `json:"nodes"`
	Parts []QuotaPart `json:"parts"`
	// The figures below, up to Runs, describe the quota part.
	TPM      int64  `json:"tpm"`
	Clients  int    `json:"clients"`
	Duration string `json:"duration"`
	// Skew is the share of the clients on node 0 when it was set; 0 when
	// they were spread round-robin.
	Skew float64 `json:"skew,omitempty"`
	// ClientsPerNode is how many clients each node got, node 0 first.
	ClientsPerNode []int `json:"clients_per_node"`
	// DefaultAllowance is the node's completion allowance for requests
	// without max_tokens.
	DefaultAllowance int64 `json:"default_completion_tokens"`
	// Runs has one entry per mode.
	Runs []QuotaRun `json:"runs,omitempty"`
	// Replication and Catchup are the results of those parts, when run.
	Replication *ReplicationReport `json:"replication,omitempty"`
	Gossip      *GossipReport      `json:"gossip,omitempty"`
	Catchup     *CatchupReport     `json:"catchup,omitempty"`
	// Failures says which parts failed, and why; the others still ran.
	Failures []string `json:"failures,omitempty"`
}

// QuotaRun is the outcome of one mode's run.
type QuotaRun struct {
	Mode QuotaMode `json:"mode"`
	// ElapsedSeconds is the wall time from the first send to the last answer.
	ElapsedSeconds float64 `json:"elapsed_s"`
	// Sent counts every request sent, retries included.
	Sent int `json:"sent"`
	// Admitted counts 200 answers; Refused counts 429 rate_limit_exceeded
	// answers (the nodes' TPM refusals); Errors counts everything else.
	Admitted   int    `json:"admitted"`
	Refused    int    `json:"refused"`
	Errors     int    `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	// TokensAdmitted is the sum of x-llmgate-tokens-consumed over admitted
	// requests (the settled charge).
	TokensAdmitted int64 `json:"tokens_admitted"`
	// AdmittedRPS is Admitted per second of the run; TokensPerMinute is the
	// average admitted tokens per minute of the run.
	AdmittedRPS     float64 `json:"admitted_rps"`
	TokensPerMinute float64 `json:"tokens_per_minute"`
	// MaxWindowTokens is the largest number of tokens admitted, by all nodes
	// together, in any sliding 60 s interval, by client send time;
	// MaxWindowRatio is it divided by the TPM limit (the figure that must
	// not exceed 1, or 1.02 with several nodes), and MaxWindowStartS where
	// that interval starts, seconds into the run. With a run shorter than
	// 60 s, it is simply everything admitted.
	MaxWindowTokens int64   `json:"max_window_tokens"`
	MaxWindowRatio  float64 `json:"max_window_ratio"`
	MaxWindowStartS float64 `json:"max_window_start_s"`
	// FullWindow reports whether the run was long enough (> 60 s) for the
	// maximum to be over a whole window.
	FullWindow bool `json:"full_window"`
	// LastMinuteTokens is what clients saw admitted in the run's last 60 s,
	// to compare with the nodes' tpm_used read right after the run.
	LastMinuteTokens int64 `json:"last_minute_tokens"`
	// EarlyRefusals counts refusals made while the cluster had room: the
	// tokens admitted by all nodes in the 60 s window, at its fullest
	// between the refused request's send and answer (requests possibly in
	// flight then counted at their reservation, as a node counts them), plus
	// the refused request's own estimate, fit the TPM (see earlyRefusals).
	// It is computed from the clients' logs, so it counts every refusal the
	// cluster need not have made, whatever the cause. EarlyRefusalShare is
	// it as a share of all requests sent.
	EarlyRefusals     int     `json:"early_refusals"`
	EarlyRefusalShare float64 `json:"early_refusal_share"`
	// EarlyRefusedPrompts counts the distinct requests (a prompt and its
	// retries) refused early at least once, of Prompts answered 200 or 429:
	// a client retries a refused prompt, so one request too large for a
	// node's share can be refused early many times.
	EarlyRefusedPrompts int `json:"early_refused_prompts"`
	Prompts             int `json:"prompts"`
	// EarlyRefusals61s counts the refusals that are early even over a 61 s
	// window: a node's window is 61 one-second buckets (it can never
	// over-admit), so a refusal early only by that extra second is the
	// window's granularity, not the sharing of the budget between nodes.
	EarlyRefusals61s int `json:"early_refusals_61s"`
	// ShareRefusals is the sum over the nodes of their share_refusals: the
	// refusals each made because its share of the cluster's remaining
	// budget was used while its view of the window still had room.
	ShareRefusals int64 `json:"share_refusals"`
	// PerNode is what the clients of each node saw, node 0 first.
	PerNode []QuotaNodeLoad `json:"per_node"`
	// AdmittedLatency is the client-observed latency of 200 answers;
	// RefusedLatency that of 429 answers: the admission decision end to end
	// through HTTP. Milliseconds.
	AdmittedLatency QuotaLatency `json:"admitted_latency"`
	RefusedLatency  QuotaLatency `json:"refused_latency"`
	// Estimate compares prompt estimates with the mock's usage.prompt_tokens
	// of the same requests.
	Estimate QuotaEstimate `json:"estimate"`
	// Nodes is each node's GET /admin/quota/{consumer} right after the run.
	Nodes []QuotaNodeStatus `json:"nodes"`
}

// QuotaNodeLoad is what the clients sending to one node saw.
type QuotaNodeLoad struct {
	Node     string `json:"node"`
	Clients  int    `json:"clients"`
	Sent     int    `json:"sent"`
	Admitted int    `json:"admitted"`
	Refused  int    `json:"refused"`
	Errors   int    `json:"errors"`
	// TokensAdmitted is the settled charge of the node's admissions;
	// TokenShare is it as a share of the cluster's.
	TokensAdmitted int64   `json:"tokens_admitted"`
	TokenShare     float64 `json:"token_share"`
	// EarlyRefusals is the node's part of QuotaRun.EarlyRefusals.
	EarlyRefusals int `json:"early_refusals"`
}

// QuotaLatency summarises client-observed latencies, in milliseconds.
type QuotaLatency struct {
	Count int     `json:"count"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

// QuotaEstimate is the accuracy of prompt token estimates against the
// mock's usage.prompt_tokens of the same admitted requests.
type QuotaEstimate struct {
	// Local is package tokens' CountChat, run in the benchmark process on
	// the messages sent. The mock counts with the same package, so this
	// checks that the count is reproducible from the wire messages.
	Local EstimateError `json:"local"`
	// Node is the node's own estimate, read from the "needs an estimated N
	// tokens" of a 429 refusal (N minus the completion allowance) of a
	// request later retried and admitted: the estimate the node admitted by.
	Node EstimateError `json:"node"`
}

// EstimateError summarises |estimate - actual| / actual over samples.
type EstimateError struct {
	Samples int `json:"samples"`
	// MeanAbsRelErr and MaxAbsRelErr are fractions (0.03 = 3%).
	MeanAbsRelErr float64 `json:"mean_abs_rel_err"`
	MaxAbsRelErr  float64 `json:"max_abs_rel_err"`
}

// QuotaNodeStatus is the part of a node's /admin/quota/{consumer} answer
// the report keeps.
type QuotaNodeStatus struct {
	Node          string           `json:"node"`
	TPMLimit      int64            `json:"tpm_limit"`
	TPMUsed       int64            `json:"tpm_used"`
	TPMRemaining  int64            `json:"tpm_remaining"`
	ByNode        map[string]int64 `json:"by_node,omitempty"`
	ShareRefusals int64            `json:"share_refusals"`
	Error         string           `json:"error,omitempty"`
}

// Quota measures how exactly a cluster of nodes holds one consumer to its
// TPM limit, and how fast the nodes share their cache. It runs opts.Parts in
// order, each against its own mock upstream and fresh nodes on loopback:
//
//   - quota: for each mode, opts.Clients closed-loop clients of a consumer
//     with opts.TPM, spread over opts.Nodes clustered nodes (mock: 5ms
//     latency, instant generation), each honouring refusals (sleeping for
//     retry-after-ms, capped at 2s, with jitter, then retrying the same
//     request) for opts.Duration. It reports the largest number of tokens
//     admitted in any sliding minute as a ratio to the limit, each node's
//     share, refusals made while the cluster had room, the latencies of
//     admissions and refusals, and the accuracy of the prompt estimates.
//   - replication: the delay from a cache miss answered by node 0 to the
//     entry being found on the other nodes.
//   - catchup: the time a node that was stopped takes, once restarted, to
//     hold the entries written through the other node while it was down.
//
// A part that fails is noted in the report and the others still run; the
// error returned then names every failure, with the report of what ran. It
// writes the report as tables to w.
//
// Every child process is stopped and the temporary directory removed before
// Quota returns, also on error and when ctx is cancelled.
func Quota(ctx context.Context, opts QuotaOptions, w io.Writer) (*QuotaReport, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("quota: %w", err)
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	started := time.Now()

	dir, err := os.MkdirTemp("", "llmgate-bench-quota-*")
	if err != nil {
		return nil, fmt.Errorf("quota: %w", err)
	}
	defer os.RemoveAll(dir)

	rep := &QuotaReport{
		StartedAt:        started.UTC(),
		CPUs:             runtime.NumCPU(),
		Nodes:            opts.Nodes,
		Parts:            opts.Parts,
		TPM:              opts.TPM,
		Clients:          opts.Clients,
		Duration:         opts.Duration.String(),
		Skew:             opts.Skew,
		ClientsPerNode:   clientsPerNode(spreadClients(opts.Clients, opts.Nodes, opts.Skew), opts.Nodes),
		DefaultAllowance: quotaDefaultAllowance,
	}
	var failed []error
	for _, part := range opts.Parts {
		partDir := filepath.Join(dir, string(part))
		var err error
		switch part {
		case QuotaPartQuota:
			rep.Runs, err = runQuotaPart(ctx, opts, partDir, progress)
		case QuotaPartReplication:
			rep.Replication, err = runReplication(ctx, opts, partDir, progress)
		case QuotaPartCatchup:
			rep.Catchup, err = runCatchup(ctx, opts, partDir, progress)
		case QuotaPartGossip:
			rep.Gossip, err = runGossip(ctx, opts, partDir, progress)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("quota: %w", ctx.Err())
		}
		if err != nil {
			err = fmt.Errorf("part %s: %w", part, err)
			fmt.Fprintf(progress, "%v\n", err)
			rep.Failures = append(rep.Failures, err.Error())
			failed = append(failed, err)
		}
	}
	rep.ElapsedSeconds = time.Since(started).Seconds()

	if err := rep.WriteTable(w); err != nil {
		return rep, fmt.Errorf("quota: writing table: %w", err)
	}
	if len(failed) > 0 {
		return rep, fmt.Errorf("quota: %w", errors.Join(failed...))
	}
	return rep, nil
}

// runQuotaPart runs every mode against fresh nodes and a mock of its own.
func runQuotaPart(ctx context.Context, opts QuotaOptions, dir string, progress io.Writer) ([]QuotaRun, error) {
	mock, mockAddr, err := startMock(ctx, opts.Executable, opts.StartTimeout, "mock-upstream", "5ms")
	if err != nil {
		return nil, err
	}
	defer mock.Stop()

	consumers := []benchConsumer{{name: quotaConsumer, key: quotaKey, tpm: opts.TPM}}
	counter := tokens.NewCounter()
	var runs []QuotaRun
	for i, mode := range opts.Modes {
		nodes, err := startCluster(ctx, opts, filepath.Join(dir, fmt.Sprintf("run-%d", i)), opts.Nodes, mockAddr, consumers, "")
		if err != nil {
			return runs, err
		}
		fmt.Fprintf(progress, "mode %s: mock upstream %s, %d node(s) %s; %d clients (%s per node) for %v against %d TPM\n",
			mode, mockAddr, len(nodes), nodeAddrs(nodes), opts.Clients,
			joinIntsSlash(clientsPerNode(spreadClients(opts.Clients, opts.Nodes, opts.Skew), opts.Nodes)), opts.Duration, opts.TPM)
		run, err := runQuotaMode(ctx, opts, mode, nodes, counter, progress)
		stopNodes(nodes)
		if err != nil {
			return runs, fmt.Errorf("mode %s: %w", mode, err)
		}
		runs = append(runs, *run)
	}
	return runs, nil
}

// startMock starts a mock upstream named name (in messages) with the given
// time to first token and instant generation, and returns it with its
// address.
func startMock(ctx context.Context, exe string, timeout time.Duration, name, latency string) (*process, string, error) {
	mock, err := startProcess(ctx, name, exe,
		"mock-upstream", "--listen", "127.0.0.1:0", "--latency", latency, "--token-rate", "0")
	if err != nil {
		return nil, "", err
	}
	addr, err := mock.waitListening(ctx, "mock-upstream listening on", timeout)
	if err != nil {
		mock.Stop()
		return nil, "", err
	}
	return mock, addr, nil
}

func nodeAddrs(nodes []*benchNode) string {
	s := make([]string, len(nodes))
	for i, n := range nodes {
		s[i] = fmt.Sprintf("%s=%s (pid %d)", n.name, n.listen, n.proc.PID())
	}
	return strings.Join(s, ", ")
}

// spreadClients returns the index of the node each of clients clients
// sends to. With skew 0 client i goes to node i mod nodes. With skew in
// (0, 1], round(skew × clients) clients go to node 0 and the others
// round-robin to nodes 1..nodes-1; with one node, all go to it.
func spreadClients(clients, nodes int, skew float64) []int {
	out := make([]int, max(clients, 0))
	if nodes <= 1 {
		return out
	}
	if skew <= 0 {
		for i := range out {
			out[i] = i % nodes
		}
		return out
	}
	onFirst := min(max(int(math.Round(skew*float64(clients))), 0), clients)
	for i := onFirst; i < clients; i++ {
		out[i] = 1 + (i-onFirst)%(nodes-1)
	}
	return out
}

// clientsPerNode counts how many clients each of nodes nodes got.
func clientsPerNode(assign []int, nodes int) []int {
	counts := make([]int, max(nodes, 1))
	for _, n := range assign {
		counts[n]++
	}
	return counts
}

func joinIntsSlash(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, " / ")
}

// startCluster starts count nodes under dir, node i > 0 joining node 0's
// gossip address, and waits until every node lists every node as alive. Each
// node's config is clusterConfig's with mockAddr, consumers and extra.
func startCluster(ctx context.Context, opts QuotaOptions, dir string, count int, mockAddr string, consumers []benchConsumer, extra string) ([]*benchNode, error) {
	exe, timeout := opts.Executable, opts.StartTimeout
	var nodes []*benchNode
	for i := range count {
		var join []string
		if i > 0 {
			join = []string{nodes[0].gossip}
		}
		name := fmt.Sprintf("bench-%d", i+1)
		n, err := startNode(ctx, exe, timeout, dir, name, func(dataDir string, n *benchNode) string {
			return clusterConfig(name, dataDir, n, join, mockAddr, consumers, extra)
		})
		if err != nil {
			stopNodes(nodes)
			return nil, err
		}
		nodes = append(nodes, n)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	if err := waitClusterFormed(ctx, client, nodes, timeout); err != nil {
		stopNodes(nodes)
		return nil, err
	}
	return nodes, nil
}

// benchConsumer is one consumer of a benchmark node's config.
type benchConsumer struct {
	name, key string
	tpm       int64 // 0: no limit
}

// clusterConfig returns the YAML config of a clustered benchmark node: the
// mock as the one backend, one route, the consumers, the admin API open on
// loopback (no admin_token), an explicit default completion allowance, and
// whatever extra top-level YAML the part adds (no cache unless extra turns
// it on).
func clusterConfig(name, dataDir string, n *benchNode, join []string, mockAddr string, consumers []benchConsumer, extra string) string {
	cluster := fmt.Sprintf("{gossip: %s}", n.gossip)
	if len(join) > 0 {
		cluster = fmt.Sprintf("{gossip: %s, join: [%s]}", n.gossip, strings.Join(join, ", "))
	}
	var cs strings.Builder
	for _, c := range consumers {
		if c.tpm > 0 {
			fmt.Fprintf(&cs, "  - {name: %s, keys: [%s], tpm: %d}\n", c.name, c.key, c.tpm)
		} else {
			fmt.Fprintf(&cs, "  - {name: %s, keys: [%s]}\n", c.name, c.key)
		}
	}
	return fmt.Sprintf(`node: {name: %s, data_dir: %q}
listen: %s
admin_listen: %s
cluster: %s
log: {level: warn}
limits: {default_completion_tokens: %d}
backends:
  - {name: mock, kind: openai, url: "http://%s/v1", deployments: [%s]}
routes:
  %s: {pool: [[mock]]}
consumers:
%s`, name, dataDir, n.listen, n.admin, cluster, quotaDefaultAllowance, mockAddr, quotaModel, quotaModel, cs.String()) + extra
}

// quotaSample is one answered request of a run.
type quotaSample struct {
	at      time.Duration // send time, from the run's start
	latency time.Duration
	status  int
	tokens  int64 // admitted: tokens consumed
	// estimate is what the node reserves (admitted) or would have reserved
	// (refused) for the request: its prompt estimate plus the completion
	// allowance.
	estimate int64
	// prompt numbers the client's prompts: the retries of one prompt share it.
	prompt int
}

// quotaClientResult is what one client collected; each client owns its own.
type quotaClientResult struct {
	node              int // index of the node the client sends to
	admitted, refused []quotaSample
	errors            int
	firstError        string
	localErr, nodeErr []float64 // relative estimate errors: local count, node's
}

// runQuotaMode runs opts.Clients clients against nodes for opts.Duration and
// folds what they saw into a QuotaRun.
func runQuotaMode(ctx context.Context, opts QuotaOptions, mode QuotaMode, nodes []*benchNode, counter *tokens.Counter, progress io.Writer) (*QuotaRun, error) {
	client := NewLoadClient(opts.Clients)
	defer client.CloseIdleConnections()

	// Build both codecs' state and the connections before the clock starts.
	counter.CountChat(quotaModel, []openai.Message{{Role: "user", Content: json.RawMessage(`"warm up"`)}})

	assign := spreadClients(opts.Clients, len(nodes), opts.Skew)
	results := make([]quotaClientResult, opts.Clients)
	var live quotaLive
	start := time.Now()
	deadline := start.Add(opts.Duration)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopProgress := live.report(runCtx, progress, start, opts.TPM)

	var wg sync.WaitGroup
	for i := range opts.Clients {
		results[i].node = assign[i]
		c := &quotaClient{
			id:      i,
			mode:    mode,
			node:    nodes[assign[i]],
			http:    client,
			counter: counter,
			rng:     rand.New(rand.NewPCG(uint64(i)+1, uint64(len(mode)))),
			start:   start,
			live:    &live,
			out:     &results[i],
		}
		wg.Go(func() { c.run(runCtx, deadline) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	run := foldQuotaResults(mode, results, nodes, opts, elapsed)
	for _, n := range nodes {
		st := fetchQuotaStatus(ctx, client, n)
		run.ShareRefusals += st.ShareRefusals
		run.Nodes = append(run.Nodes, st)
	}
	fmt.Fprintf(progress, "mode %s done: %d admitted, %d refused (%d early), %d errors; max sliding minute %d tokens (%.3f of TPM)\n",
		mode, run.Admitted, run.Refused, run.EarlyRefusals, run.Errors, run.MaxWindowTokens, run.MaxWindowRatio)
	return run, nil
}

// foldQuotaResults folds what the clients saw into a QuotaRun (all but the
// nodes' admin status).
func foldQuotaResults(mode QuotaMode, results []quotaClientResult, nodes []*benchNode, opts QuotaOptions, elapsed time.Duration) *QuotaRun {
	run := &QuotaRun{Mode: mode, ElapsedSeconds: elapsed.Seconds()}
	run.PerNode = make([]QuotaNodeLoad, len(nodes))
	for i, n := range nodes {
		run.PerNode[i].Node = n.name
	}
	var events []tokenEvent
	var adms []admission
	var refs []refusal
	var refNode []int                // node index of each of refs
	var refPrompt [][2]int           // client and prompt of each of refs
	prompts := make(map[[2]int]bool) // every (client, prompt) sent
	var okLat, refLat []time.Duration
	var local, node []float64
	for ci, r := range results {
		pn := &run.PerNode[r.node]
		pn.Clients++
		for _, s := range r.admitted {
			events = append(events, tokenEvent{at: s.at, tokens: s.tokens})
			adms = append(adms, admission{at: s.at, done: s.at + s.latency, tokens: s.tokens, reserved: s.estimate})
			okLat = append(okLat, s.latency)
			prompts[[2]int{ci, s.prompt}] = true
			run.TokensAdmitted += s.tokens
			pn.TokensAdmitted += s.tokens
			if s.at >= opts.Duration-quotaWindow {
				run.LastMinuteTokens += s.tokens
			}
		}
		for _, s := range r.refused {
			refs = append(refs, refusal{at: s.at, done: s.at + s.latency, estimate: s.estimate})
			refNode = append(refNode, r.node)
			refPrompt = append(refPrompt, [2]int{ci, s.prompt})
			prompts[[2]int{ci, s.prompt}] = true
			refLat = append(refLat, s.latency)
		}
		run.Admitted += len(r.admitted)
		run.Refused += len(r.refused)
		run.Errors += r.errors
		pn.Admitted += len(r.admitted)
		pn.Refused += len(r.refused)
		pn.Errors += r.errors
		pn.Sent += len(r.admitted) + len(r.refused) + r.errors
		run.FirstError = cmp.Or(run.FirstError, r.firstError)
		local = append(local, r.localErr...)
		node = append(node, r.nodeErr...)
	}
	run.Sent = run.Admitted + run.Refused + run.Errors
	run.AdmittedRPS = float64(run.Admitted) / elapsed.Seconds()
	run.TokensPerMinute = float64(run.TokensAdmitted) / elapsed.Minutes()
	var at time.Duration
	run.MaxWindowTokens, at = maxWindowSum(events, quotaWindow)
	run.MaxWindowStartS = at.Seconds()
	if opts.TPM > 0 {
		run.MaxWindowRatio = float64(run.MaxWindowTokens) / float64(opts.TPM)
	}
	run.FullWindow = opts.Duration > quotaWindow
	for i := range run.PerNode {
		if run.TokensAdmitted > 0 {
			run.PerNode[i].TokenShare = float64(run.PerNode[i].TokensAdmitted) / float64(run.TokensAdmitted)
		}
	}
	early := earlyRefusals(adms, refs, opts.TPM, quotaWindow)
	earlyPrompts := make(map[[2]int]bool)
	for i, e := range early {
		if e {
			run.EarlyRefusals++
			run.PerNode[refNode[i]].EarlyRefusals++
			earlyPrompts[refPrompt[i]] = true
		}
	}
	run.EarlyRefusedPrompts, run.Prompts = len(earlyPrompts), len(prompts)
	for _, e := range earlyRefusals(adms, refs, opts.TPM, quotaWindow+time.Second) {
		if e {
			run.EarlyRefusals61s++
		}
	}
	if run.Sent > 0 {
		run.EarlyRefusalShare = float64(run.EarlyRefusals) / float64(run.Sent)
	}
	run.AdmittedLatency = quotaLatency(okLat)
	run.RefusedLatency = quotaLatency(refLat)
	run.Estimate = QuotaEstimate{Local: estimateError(local), Node: estimateError(node)}
	return run
}

// admission is an admitted request as the early-refusal check sees it.
type admission struct {
	at, done time.Duration // sent and answered, from the run's start
	tokens   int64         // settled charge
	reserved int64         // what the node reserved until it settled
}

// refusal is a refused request as the early-refusal check sees it.
type refusal struct {
	at, done time.Duration // sent and answered, from the run's start
	estimate int64         // what the node would have reserved
}

// earlyRefusals reports, for each refusal, whether it was early: whether
// the cluster-wide window, at its fullest while the node was deciding, plus
// the refused request's own estimate, still fit tpm.
//
// Only the clients' times are known: a node admitted a request somewhere
// between its send and its answer, settled it before the answer, and
// decided a refusal between that request's send and answer. So an
// admission counts if it may have been in the window at any moment of the
// refusal's [at, done]: sent by the refusal's answer and answered less than
// window before the refusal was sent. It counts at the larger of its
// reservation and its charge if it may have been in flight then (answered
// after the refusal was sent), else at its charge. This is the most the
// node can have seen, so a refusal flagged early had room by any reading of
// the clocks. Neither slice is modified.
func earlyRefusals(adms []admission, refs []refusal, tpm int64, window time.Duration) []bool {
	// window(r) = tokens of admissions sent by r.done
	//           - tokens of those answered by r.at - window (gone by then)
	//           + extra of those sent by r.done
	//           - extra of those answered by r.at (settled by then),
	// extra being what a reservation adds to the charge while in flight. An
	// admission answered by r.at-window or r.at was also sent by r.done, so
	// each difference counts a subset of the admissions it starts from.
	byAt := prefixSums(adms, func(a admission) (time.Duration, int64, int64) {
		return a.at, a.tokens, max(a.reserved-a.tokens, 0)
	})
	byGone := prefixSums(adms, func(a admission) (time.Duration, int64, int64) { return a.done + window, a.tokens, 0 })
	byDone := prefixSums(adms, func(a admission) (time.Duration, int64, int64) {
		return a.done, 0, max(a.reserved-a.tokens, 0)
	})
	early := make([]bool, len(refs))
	for i, r := range refs {
		sentTokens, sentExtra := byAt.upTo(r.done)
		goneTokens, _ := byGone.upTo(r.at)
		_, settledExtra := byDone.upTo(r.at)
		w := sentTokens - goneTokens + sentExtra - settledExtra
		early[i] = w+r.estimate <= tpm
	}
	return early
}

// timedSums holds times in ascending order with running totals of two
// values, for "sum of everything at or before t" in O(log n).
type timedSums struct {
	at   []time.Duration
	a, b []int64 // a[i], b[i]: totals of the first i entries
}

// prefixSums sorts the keys key returns for each admission and accumulates
// their two values.
func prefixSums(adms []admission, key func(admission) (time.Duration, int64, int64)) timedSums {
	type kv struct {
		at   time.Duration
		a, b int64
	}
	kvs := make([]kv, len(adms))
	for i, adm := range adms {
		kvs[i].at, kvs[i].a, kvs[i].b = key(adm)
	}
	slices.SortFunc(kvs, func(x, y kv) int { return cmp.Compare(x.at, y.at) })
	s := timedSums{at: make([]time.Duration, len(kvs)), a: make([]int64, len(kvs)+1), b: make([]int64, len(kvs)+1)}
	for i, e := range kvs {
		s.at[i] = e.at
		s.a[i+1] = s.a[i] + e.a
		s.b[i+1] = s.b[i] + e.b
	}
	return s
}

// upTo returns the totals of the entries at or before t.
func (s timedSums) upTo(t time.Duration) (int64, int64) {
	n, found := slices.BinarySearch(s.at, t)
	for found && n < len(s.at) && s.at[n] == t {
		n++
	}
	return s.a[n], s.b[n]
}

// quotaLive holds running totals for the progress lines.
type quotaLive struct {
	admitted, refused, errors, tokens atomic.Int64
}

// report prints a progress line every 10 s until the returned func is called.
func (l *quotaLive) report(ctx context.Context, w io.Writer, start time.Time, tpm int64) (stop func()) {
	if w == io.Discard {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case <-t.C:
				el := time.Since(start)
				fmt.Fprintf(w, "  %5.0fs  admitted %d (%d tokens, %.0f/min vs %d TPM)  refused %d  errors %d\n",
					el.Seconds(), l.admitted.Load(), l.tokens.Load(), float64(l.tokens.Load())/el.Minutes(), tpm,
					l.refused.Load(), l.errors.Load())
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// quotaClient is one closed-loop client of the consumer.
type quotaClient struct {
	id      int
	mode    QuotaMode
	node    *benchNode
	http    *http.Client
	counter *tokens.Counter
	rng     *rand.Rand
	start   time.Time
	live    *quotaLive
	out     *quotaClientResult
	prompts int // prompts made so far
}

// quotaPrompt is one request a client keeps sending until it is admitted.
type quotaPrompt struct {
	seq       int // the client's count of prompts before this one
	body      []byte
	estimate  int   // package tokens' count of the messages
	allowance int64 // the completion allowance the node reserves
	nodeEst   int   // the node's prompt estimate from a refusal; 0 = none seen
}

// reservation is what a node reserves for p: its prompt estimate (the
// node's own if a refusal named it, else the local count) plus the
// completion allowance.
func (p *quotaPrompt) reservation() int64 {
	est := p.estimate
	if p.nodeEst > 0 {
		est = p.nodeEst
	}
	return int64(est) + p.allowance
}

// run sends requests until deadline: a new prompt after each admission, the
// same prompt again after a refusal (once the node's retry-after-ms, capped
// at quotaMaxBackoff, plus jitter, has passed).
func (c *quotaClient) run(ctx context.Context, deadline time.Time) {
	url := "http://" + c.node.listen + "/v1/chat/completions"
	var p *quotaPrompt
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if p == nil {
			p = c.newPrompt()
		}
		sent := time.Now()
		status, h, body, err := chatPost(ctx, c.http, url, quotaKey, p.body)
		lat := time.Since(sent)
		s := quotaSample{at: sent.Sub(c.start), latency: lat, status: status, prompt: p.seq}
		var wait time.Duration
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			c.fail(err.Error())
			wait = quotaErrorBackoff
		case status == http.StatusOK:
			c.admitted(s, p, h, body)
			p = nil
		case status == http.StatusTooManyRequests && h.Get("retry-after-ms") != "":
			if est, ok := refusalEstimate(body); ok {
				p.nodeEst = int(est - p.allowance)
			}
			s.estimate = p.reservation()
			c.out.refused = append(c.out.refused, s)
			c.live.refused.Add(1)
			ms, _ := strconv.ParseInt(h.Get("retry-after-ms"), 10, 64)
			wait = min(time.Duration(ms)*time.Millisecond, quotaMaxBackoff)
			wait += time.Duration(c.rng.Int64N(int64(wait/10 + 10*time.Millisecond)))
		default:
			// Including a 429 without retry-after-ms: a request that can
			// never fit. It is dropped for a new one.
			c.fail(fmt.Sprintf("status %d: %s", status, strings.TrimSpace(string(body[:min(len(body), 200)]))))
			wait, p = quotaErrorBackoff, nil
		}
		if wait > 0 && !sleepUntil(ctx, earliest(time.Now().Add(wait), deadline)) {
			return
		}
	}
}

func (c *quotaClient) fail(msg string) {
	c.out.errors++
	c.live.errors.Add(1)
	if c.out.firstError == "" {
		c.out.firstError = msg
	}
}

// admitted records a 200 answer to p.
func (c *quotaClient) admitted(s quotaSample, p *quotaPrompt, h http.Header, body []byte) {
	var resp struct {
		Usage struct {
			PromptTokens int   `json:"prompt_tokens"`
			TotalTokens  int64 `json:"total_tokens"`
		} `json:"usage"`
	}
	_ = json.Unmarshal(body, &resp)
	s.estimate = p.reservation()
	if v, err := strconv.ParseInt(h.Get("x-llmgate-tokens-consumed"), 10, 64); err == nil {
		s.tokens = v
	} else {
		s.tokens = resp.Usage.TotalTokens
	}
	if actual := resp.Usage.PromptTokens; actual > 0 {
		c.out.localErr = append(c.out.localErr, relErr(p.estimate, actual))
		if p.nodeEst > 0 {
			c.out.nodeErr = append(c.out.nodeErr, relErr(p.nodeEst, actual))
		}
	}
	c.out.admitted = append(c.out.admitted, s)
	c.live.admitted.Add(1)
	c.live.tokens.Add(s.tokens)
}

func relErr(est, actual int) float64 {
	return math.Abs(float64(est-actual)) / float64(actual)
}

// quotaWords is the vocabulary of generated prompts: common words, names,
// numbers and punctuation, so the tokenizer sees more than one-token words.
var quotaWords = strings.Fields(`the a of to and in is it that for on with as was by at be this from or have
an are not which but all were when we there can your more if will about up out them would into has than
other its time could two first been people who now also like over only new some these any many then
gateway tokenizer latency throughput Kubernetes PostgreSQL Azure OpenAI deployment replica quota window
minute refusal budget cluster gossip memberlist Badger HNSW embedding semantic cache eviction Zürich
naïve café 2024-10-21 3.14159 42 1,000,000 0x7f (parenthesised) "quoted" don't it's e.g. i.e. —
self-hosted rate-limit back-pressure well-known state-of-the-art #hashtag @mention snake_case CamelCase`)

// newPrompt builds a random chat request for the client's mode.
func (c *quotaClient) newPrompt() *quotaPrompt {
	words := randomWords(c.rng, quotaMinWords+c.rng.IntN(quotaMaxWords-quotaMinWords+1))
	user := fmt.Sprintf("Request %d from client %d: %s.", c.rng.Uint32(), c.id, words)
	msgs := []chatMessage{
		{Role: "system", Content: "You are a terse assistant used by a load test."},
		{Role: "user", Content: user},
	}
	req := struct {
		Model     string        `json:"model"`
		Messages  []chatMessage `json:"messages"`
		MaxTokens *int64        `json:"max_tokens,omitempty"`
	}{Model: quotaModel, Messages: msgs}
	p := &quotaPrompt{seq: c.prompts, allowance: quotaDefaultAllowance}
	c.prompts++
	if c.mode == QuotaModeMaxTokens {
		mt := int64(quotaMinMaxTokens + c.rng.IntN(quotaMaxMaxTokens-quotaMinMaxTokens+1))
		req.MaxTokens, p.allowance = &mt, mt
	}
	p.body, _ = json.Marshal(req)
	om := make([]openai.Message, len(msgs))
	for i, m := range msgs {
		content, _ := json.Marshal(m.Content)
		om[i] = openai.Message{Role: m.Role, Content: content}
	}
	p.estimate = c.counter.CountChat(quotaModel, om)
	return p
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// chatPost sends one chat request with consumer key key and reads the whole
// answer.
func chatPost(ctx context.Context, c *http.Client, url, key string, body []byte) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, defaultRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("api-key", key)
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, resp.Header, nil, fmt.Errorf("reading body: %w", err)
	}
	return resp.StatusCode, resp.Header, b, nil
}

// estimatedRe finds the node's estimate in a TPM refusal's message.
var estimatedRe = regexp.MustCompile(`needs an estimated (\d+) tokens`)

// refusalEstimate returns the total estimate (prompt plus allowance) a
// refusal's message names.
func refusalEstimate(body []byte) (int64, bool) {
	m := estimatedRe.FindSubmatch(body)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseInt(string(m[1]), 10, 64)
	return v, err == nil
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// sleepUntil sleeps until t; false if ctx was cancelled first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// fetchQuotaStatus reads GET /admin/quota/{consumer} from n's admin port;
// a failure is noted in the status's Error.
func fetchQuotaStatus(ctx context.Context, c *http.Client, n *benchNode) QuotaNodeStatus {
	var st QuotaNodeStatus
	if err := adminJSON(ctx, c, http.MethodGet, n, "/admin/quota/"+quotaConsumer, nil, &st); err != nil {
		st.Error = err.Error()
	}
	st.Node = n.name
	return st
}

// tokenEvent is an admission: when (from the run's start) and how many tokens.
type tokenEvent struct {
	at     time.Duration
	tokens int64
}

// maxWindowSum returns the largest total of tokens among events whose times
// fall within any half-open interval [t, t+window), and the time of the first
// event of such an interval (0 for no events). events may be in any order; it
// is not modified.
func maxWindowSum(events []tokenEvent, window time.Duration) (int64, time.Duration) {
	ev := slices.Clone(events)
	slices.SortFunc(ev, func(a, b tokenEvent) int { return cmp.Compare(a.at, b.at) })
	var best, sum int64
	var bestAt time.Duration
	lo := 0
	for hi, e := range ev {
		sum += e.tokens
		for lo < hi && ev[lo].at <= e.at-window { // ev[lo] is a whole window or more before e
			sum -= ev[lo].tokens
			lo++
		}
		if hi == 0 || sum > best {
			best, bestAt = sum, ev[lo].at
		}
	}
	return best, bestAt
}

func quotaLatency(samples []time.Duration) QuotaLatency {
	p := Summarize(samples)
	return QuotaLatency{Count: p.Count, P50Ms: ms(p.P50), P99Ms: ms(p.P99), MaxMs: ms(p.Max)}
}

func estimateError(errs []float64) EstimateError {
	e := EstimateError{Samples: len(errs)}
	if len(errs) == 0 {
		return e
	}
	var sum float64
	for _, x := range errs {
		sum += x
		e.MaxAbsRelErr = max(e.MaxAbsRelErr, x)
	}
	e.MeanAbsRelErr = sum / float64(len(errs))
	return e
}

// WriteTable writes the report as aligned text tables: the quota part, one
// column per mode, then the replication and catch-up parts, of those that
// ran.
func (r *QuotaReport) WriteTable(w io.Writer) error {
	spread := "round-robin"
	if r.Skew > 0 {
		spread = fmt.Sprintf("skew %.2f", r.Skew)
	}
	fmt.Fprintf(w, "llmgate bench quota: %d node(s), parts %s, %d CPU(s)\n", r.Nodes, joinParts(r.Parts), r.CPUs)
	if slices.Contains(r.Parts, QuotaPartQuota) {
		fmt.Fprintf(w, "\nquota: %d clients of one consumer (%s per node, %s), TPM %d, %s per mode\n",
			r.Clients, joinIntsSlash(r.ClientsPerNode), spread, r.TPM, r.Duration)
		if err := r.writeQuotaTable(w); err != nil {
			return err
		}
	}
	if r.Replication != nil {
		if err := r.Replication.WriteTable(w); err != nil {
			return err
		}
	}
	if r.Catchup != nil {
		if err := r.Catchup.WriteTable(w); err != nil {
			return err
		}
	}
	if r.Gossip != nil {
		if err := r.Gossip.WriteTable(w); err != nil {
			return err
		}
	}
	if len(r.Failures) > 0 {
		if _, err := fmt.Fprintf(w, "\nfailed parts:\n  %s\n", strings.Join(r.Failures, "\n  ")); err != nil {
			return err
		}
	}
	return nil
}

func joinParts(ps []QuotaPart) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ",")
}

// writeQuotaTable writes the quota part's table, one column per mode.
func (r *QuotaReport) writeQuotaTable(w io.Writer) error {
	if len(r.Runs) == 0 {
		_, err := fmt.Fprintln(w, "  (no mode completed)")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	const label = "%-36s"
	fmt.Fprintf(tw, label, "mode")
	for _, run := range r.Runs {
		fmt.Fprintf(tw, "\t%s", run.Mode)
	}
	fmt.Fprint(tw, "\t\n")
	row := func(name string, f func(QuotaRun) string) {
		fmt.Fprintf(tw, label, name)
		for _, run := range r.Runs {
			fmt.Fprintf(tw, "\t%s", f(run))
		}
		fmt.Fprint(tw, "\t\n")
	}
	pct := func(x float64) string { return strconv.FormatFloat(100*x, 'f', 2, 64) + "%" }
	perNode := func(q QuotaRun, f func(QuotaNodeLoad) string) string {
		s := make([]string, len(q.PerNode))
		for i, n := range q.PerNode {
			s[i] = f(n)
		}
		return strings.Join(s, " / ")
	}
	adminPerNode := func(q QuotaRun, f func(QuotaNodeStatus) string) string {
		s := make([]string, len(q.Nodes))
		for i, n := range q.Nodes {
			if n.Error != "" {
				s[i] = "error"
			} else {
				s[i] = f(n)
			}
		}
		return strings.Join(s, " / ")
	}
	row("max tokens in any sliding 60s", func(q QuotaRun) string { return strconv.FormatInt(q.MaxWindowTokens, 10) })
	row("  as a ratio to TPM", func(q QuotaRun) string {
		s := strconv.FormatFloat(q.MaxWindowRatio, 'f', 3, 64)
		if !q.FullWindow {
			s += " (run < 60s)"
		}
		return s
	})
	row("  window starts at", func(q QuotaRun) string { return fmt.Sprintf("%.1fs", q.MaxWindowStartS) })
	row("tokens admitted", func(q QuotaRun) string { return strconv.FormatInt(q.TokensAdmitted, 10) })
	if r.Nodes > 1 {
		row("  share per node", func(q QuotaRun) string {
			return perNode(q, func(n QuotaNodeLoad) string { return strconv.FormatFloat(100*n.TokenShare, 'f', 1, 64) + "%" })
		})
	}
	row("  average per minute of the run", func(q QuotaRun) string { return strconv.FormatFloat(q.TokensPerMinute, 'f', 0, 64) })
	row("  in the last 60s (clients)", func(q QuotaRun) string { return strconv.FormatInt(q.LastMinuteTokens, 10) })
	row("  tpm_used after run (admin)", func(q QuotaRun) string {
		return adminPerNode(q, func(n QuotaNodeStatus) string { return strconv.FormatInt(n.TPMUsed, 10) })
	})
	row("requests admitted (200)", func(q QuotaRun) string { return strconv.Itoa(q.Admitted) })
	row("  per second", func(q QuotaRun) string { return strconv.FormatFloat(q.AdmittedRPS, 'f', 2, 64) })
	row("requests refused (429)", func(q QuotaRun) string { return strconv.Itoa(q.Refused) })
	if r.Nodes > 1 {
		row("  per node", func(q QuotaRun) string {
			return perNode(q, func(n QuotaNodeLoad) string { return strconv.Itoa(n.Refused) })
		})
	}
	row("early refusals (cluster had room)", func(q QuotaRun) string {
		return fmt.Sprintf("%d (%s of sent)", q.EarlyRefusals, pct(q.EarlyRefusalShare))
	})
	if r.Nodes > 1 {
		row("  per node", func(q QuotaRun) string {
			return perNode(q, func(n QuotaNodeLoad) string { return strconv.Itoa(n.EarlyRefusals) })
		})
	}
	row("  distinct requests refused early", func(q QuotaRun) string {
		return fmt.Sprintf("%d of %d", q.EarlyRefusedPrompts, q.Prompts)
	})
	row("  early even over 61s", func(q QuotaRun) string { return strconv.Itoa(q.EarlyRefusals61s) })
	row("share_refusals (admin, all nodes)", func(q QuotaRun) string {
		return fmt.Sprintf("%d (%s)", q.ShareRefusals,
			adminPerNode(q, func(n QuotaNodeStatus) string { return strconv.FormatInt(n.ShareRefusals, 10) }))
	})
	row("errors", func(q QuotaRun) string { return strconv.Itoa(q.Errors) })
	row("200 latency p50 / p99", func(q QuotaRun) string {
		return fmtMs(q.AdmittedLatency.P50Ms) + " / " + fmtMs(q.AdmittedLatency.P99Ms)
	})
	row("429 latency p50 / p99", func(q QuotaRun) string {
		return fmtMs(q.RefusedLatency.P50Ms) + " / " + fmtMs(q.RefusedLatency.P99Ms)
	})
	est := func(e EstimateError) string {
		if e.Samples == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%s / %s (n=%d)", pct(e.MeanAbsRelErr), pct(e.MaxAbsRelErr), e.Samples)
	}
	row("node prompt estimate err mean/max", func(q QuotaRun) string { return est(q.Estimate.Node) })
	row("local CountChat err mean/max", func(q QuotaRun) string { return est(q.Estimate.Local) })
	if err := tw.Flush(); err != nil {
		return err
	}
	var notes []string
	for _, run := range r.Runs {
		if run.FirstError != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", run.Mode, run.FirstError))
		}
		for _, n := range run.Nodes {
			if n.Error != "" {
				notes = append(notes, fmt.Sprintf("%s: admin %s: %s", run.Mode, n.Node, n.Error))
			}
		}
	}
	if _, err := fmt.Fprintf(w, "\nSliding minute: tokens consumed (x-llmgate-tokens-consumed) by requests admitted on all nodes, by client send time;\n"+
		"  target <= 1.000 of TPM on one node, <= 1.020 across nodes.\n"+
		"Early refusal: a 429 while the tokens admitted cluster-wide in the last 60s (at the most the node can have seen, in-flight\n"+
		"  requests at their reservation) plus its own estimate fit the TPM; over 61s: beyond the nodes' one-second buckets.\n"+
		"share_refusals: the nodes' own count of refusals because their share of the cluster's remaining budget was used.\n"+
		"Estimate error: |estimate - usage.prompt_tokens| / usage.prompt_tokens; node = the estimate a 429 names, minus the allowance (target <= 3%%).\n"+
		"The average per minute spans the whole run and may exceed TPM: a 2.5 min run touches three windows.\n"+
		"no_max_tokens reserves the default allowance (%d tokens) per request and settles to the mock's much shorter default answer.\n", r.DefaultAllowance); err != nil {
		return err
	}
	if len(notes) > 0 {
		if _, err := fmt.Fprintf(w, "first errors:\n  %s\n", strings.Join(notes, "\n  ")); err != nil {
			return err
		}
	}
	return nil
}

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

// QuotaOptions configures the quota benchmark. Zero fields take the defaults
// of DefaultQuotaOptions.
type QuotaOptions struct {
	// Executable is the llmgate binary started for the mock upstream and the
	// node. Default: the running binary.
	Executable string
	// TPM is the consumer's tokens-per-minute limit. Default 20000.
	TPM int64
	// Clients is the number of concurrent closed-loop clients of the one
	// consumer. Default 32.
	Clients int
	// Duration is the length of the run of each mode. It should exceed the
	// 60 s window well, so that the window is full several times over.
	// Default 150s.
	Duration time.Duration
	// Modes are run one after the other, each against a fresh node (so one
	// mode's tokens do not sit in the next one's window). Default: both,
	// max_tokens then no_max_tokens.
	Modes []QuotaMode
	// StartTimeout bounds how long a child process may take to come up.
	// Default 30s.
	StartTimeout time.Duration
	// Progress receives a line every few seconds as the benchmark goes.
	// Nil: silent.
	Progress io.Writer
}

// DefaultQuotaOptions returns the defaults: TPM 20000, 32 clients, both
// modes for 150s each, about five minutes in all.
func DefaultQuotaOptions() QuotaOptions {
	return QuotaOptions{
		TPM:          20000,
		Clients:      32,
		Duration:     150 * time.Second,
		Modes:        slices.Clone(QuotaModes),
		StartTimeout: 30 * time.Second,
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
	o.TPM = cmp.Or(o.TPM, def.TPM)
	o.Clients = cmp.Or(o.Clients, def.Clients)
	o.Duration = cmp.Or(o.Duration, def.Duration)
	o.StartTimeout = cmp.Or(o.StartTimeout, def.StartTimeout)
	if len(o.Modes) == 0 {
		o.Modes = def.Modes
	}
	switch {
	case o.TPM < 0:
		return o, fmt.Errorf("tpm %d is negative", o.TPM)
	case o.Clients < 0:
		return o, fmt.Errorf("clients %d is negative", o.Clients)
	case o.Duration < 0, o.StartTimeout < 0:
		return o, errors.New("durations must be positive")
	}
	for _, m := range o.Modes {
		if !slices.Contains(QuotaModes, m) {
			return o, fmt.Errorf("unknown mode %q (known: %s, %s)", m, QuotaModeMaxTokens, QuotaModeNoMaxTokens)
		}
	}
	return o, nil
}

// QuotaReport is the result of the quota benchmark.
type QuotaReport struct {
	StartedAt      time.Time `json:"started_at"`
	ElapsedSeconds float64   `json:"elapsed_s"`
	CPUs           int       `json:"cpus"`
	// Nodes is the number of gateway nodes the clients were spread over.
	Nodes    int    `json:"nodes"`
	TPM      int64  `json:"tpm"`
	Clients  int    `json:"clients"`
	Duration string `json:"duration"`
	// DefaultAllowance is the node's completion allowance for requests
	// without max_tokens.
	DefaultAllowance int64 `json:"default_completion_tokens"`
	// Runs has one entry per mode.
	Runs []QuotaRun `json:"runs"`
}

// QuotaRun is the outcome of one mode's run.
type QuotaRun struct {
	Mode QuotaMode `json:"mode"`
	// ElapsedSeconds is the wall time from the first send to the last answer.
	ElapsedSeconds float64 `json:"elapsed_s"`
	// Sent counts every request sent, retries included.
	Sent int `json:"sent"`
	// Admitted counts 200 answers; Refused counts 429 rate_limit_exceeded
	// answers (the node's TPM refusals); Errors counts everything else.
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
	// MaxWindowTokens is the largest number of tokens admitted in any
	// sliding 60 s interval, by client send time; MaxWindowRatio is it
	// divided by the TPM limit (the figure that must not exceed 1), and
	// MaxWindowStartS where that interval starts, seconds into the run.
	// With a run shorter than 60 s, it is simply everything admitted.
	MaxWindowTokens int64   `json:"max_window_tokens"`
	MaxWindowRatio  float64 `json:"max_window_ratio"`
	MaxWindowStartS float64 `json:"max_window_start_s"`
	// FullWindow reports whether the run was long enough (> 60 s) for the
	// maximum to be over a whole window.
	FullWindow bool `json:"full_window"`
	// LastMinuteTokens is what clients saw admitted in the run's last 60 s,
	// to compare with the nodes' tpm_used read right after the run.
	LastMinuteTokens int64 `json:"last_minute_tokens"`
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
	Node         string           `json:"node"`
	TPMLimit     int64            `json:"tpm_limit"`
	TPMUsed      int64            `json:"tpm_used"`
	TPMRemaining int64            `json:"tpm_remaining"`
	ByNode       map[string]int64 `json:"by_node,omitempty"`
	Error        string           `json:"error,omitempty"`
}

// Quota measures how exactly a node holds one consumer to its TPM limit. For
// each mode it starts a mock upstream (5ms latency, instant generation) and a
// fresh gateway node whose one consumer has opts.TPM, then runs opts.Clients
// closed-loop clients of that consumer for opts.Duration, each honouring
// refusals (sleeping for retry-after-ms, capped at 2s, with jitter, then
// retrying the same request). It reports the largest number of tokens
// admitted in any sliding minute as a ratio to the limit, the latencies of
// admissions and refusals, and the accuracy of the prompt estimates. It
// writes the report as a table to w and returns it.
//
// The clients are spread round-robin over the nodes; today there is one.
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

	mock, err := startProcess(ctx, "mock-upstream", opts.Executable,
		"mock-upstream", "--listen", "127.0.0.1:0", "--latency", "5ms", "--token-rate", "0")
	if err != nil {
		return nil, fmt.Errorf("quota: %w", err)
	}
	defer mock.Stop()
	mockAddr, err := mock.waitListening(ctx, "mock-upstream listening on", opts.StartTimeout)
	if err != nil {
		return nil, fmt.Errorf("quota: %w", err)
	}

	rep := &QuotaReport{
		StartedAt:        started.UTC(),
		CPUs:             runtime.NumCPU(),
		Nodes:            1,
		TPM:              opts.TPM,
		Clients:          opts.Clients,
		Duration:         opts.Duration.String(),
		DefaultAllowance: quotaDefaultAllowance,
	}
	counter := tokens.NewCounter()
	for i, mode := range opts.Modes {
		nodes, err := startQuotaNodes(ctx, opts, filepath.Join(dir, fmt.Sprintf("run-%d", i)), mockAddr, rep.Nodes)
		if err != nil {
			return nil, fmt.Errorf("quota: %w", err)
		}
		fmt.Fprintf(progress, "mode %s: mock upstream %s, %d node(s) %s; %d clients for %v against %d TPM\n",
			mode, mockAddr, len(nodes), nodeAddrs(nodes), opts.Clients, opts.Duration, opts.TPM)
		run, err := runQuotaMode(ctx, opts, mode, nodes, counter, progress)
		for _, n := range nodes {
			n.proc.Stop()
		}
		if err != nil {
			return nil, fmt.Errorf("quota: mode %s: %w", mode, err)
		}
		rep.Runs = append(rep.Runs, *run)
	}
	rep.ElapsedSeconds = time.Since(started).Seconds()

	if err := rep.WriteTable(w); err != nil {
		return rep, fmt.Errorf("quota: writing table: %w", err)
	}
	return rep, nil
}

func nodeAddrs(nodes []*benchNode) string {
	s := make([]string, len(nodes))
	for i, n := range nodes {
		s[i] = fmt.Sprintf("%s=%s (pid %d)", n.name, n.listen, n.proc.PID())
	}
	return strings.Join(s, ", ")
}

// startQuotaNodes starts count gateway nodes under dir against the mock and
// waits until each is ready. Node i > 0 joins node 0's gossip address; with
// one node that is unused (multi-node runs come with the cluster work).
func startQuotaNodes(ctx context.Context, opts QuotaOptions, dir, mockAddr string, count int) ([]*benchNode, error) {
	var nodes []*benchNode
	for i := range count {
		var join []string
		if i > 0 {
			join = []string{nodes[0].gossip}
		}
		name := fmt.Sprintf("bench-%d", i+1)
		n, err := startNode(ctx, opts.Executable, opts.StartTimeout, dir, name, func(dataDir string, n *benchNode) string {
			return quotaConfig(name, dataDir, n, join, mockAddr, opts.TPM)
		})
		if err != nil {
			for _, m := range nodes {
				m.proc.Stop()
			}
			return nil, err
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// quotaConfig returns the YAML config of a quota node: the mock as the one
// backend, one route, one consumer with the TPM limit, no cache (no cache
// key), the admin API open on loopback (no admin_token), and an explicit
// default completion allowance.
func quotaConfig(name, dataDir string, n *benchNode, join []string, mockAddr string, tpm int64) string {
	cluster := fmt.Sprintf("{gossip: %s}", n.gossip)
	if len(join) > 0 {
		cluster = fmt.Sprintf("{gossip: %s, join: [%s]}", n.gossip, strings.Join(join, ", "))
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
  - {name: %s, keys: [%s], tpm: %d}
`, name, dataDir, n.listen, n.admin, cluster, quotaDefaultAllowance, mockAddr, quotaModel, quotaModel,
		quotaConsumer, quotaKey, tpm)
}

// quotaSample is one answered request of a run.
type quotaSample struct {
	at      time.Duration // send time, from the run's start
	latency time.Duration
	status  int
	tokens  int64 // admitted: tokens consumed
}

// quotaClientResult is what one client collected; each client owns its own.
type quotaClientResult struct {
	admitted, refused []quotaSample
	errors            int
	firstError        string
	local, node       []float64 // relative estimate errors
}

// runQuotaMode runs opts.Clients clients against nodes for opts.Duration and
// folds what they saw into a QuotaRun.
func runQuotaMode(ctx context.Context, opts QuotaOptions, mode QuotaMode, nodes []*benchNode, counter *tokens.Counter, progress io.Writer) (*QuotaRun, error) {
	client := NewLoadClient(opts.Clients)
	defer client.CloseIdleConnections()

	// Build both codecs' state and the connections before the clock starts.
	counter.CountChat(quotaModel, []openai.Message{{Role: "user", Content: json.RawMessage(`"warm up"`)}})

	results := make([]quotaClientResult, opts.Clients)
	var live quotaLive
	start := time.Now()
	deadline := start.Add(opts.Duration)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopProgress := live.report(runCtx, progress, start, opts.TPM)

	var wg sync.WaitGroup
	for i := range opts.Clients {
		c := &quotaClient{
			id:      i,
			mode:    mode,
			node:    nodes[i%len(nodes)],
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

	run := &QuotaRun{Mode: mode, ElapsedSeconds: elapsed.Seconds()}
	var events []tokenEvent
	var okLat, refLat []time.Duration
	var local, node []float64
	for _, r := range results {
		for _, s := range r.admitted {
			events = append(events, tokenEvent{at: s.at, tokens: s.tokens})
			okLat = append(okLat, s.latency)
			run.TokensAdmitted += s.tokens
			if s.at >= opts.Duration-quotaWindow {
				run.LastMinuteTokens += s.tokens
			}
		}
		for _, s := range r.refused {
			refLat = append(refLat, s.latency)
		}
		run.Admitted += len(r.admitted)
		run.Refused += len(r.refused)
		run.Errors += r.errors
		run.FirstError = cmp.Or(run.FirstError, r.firstError)
		local = append(local, r.local...)
		node = append(node, r.node...)
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
	run.AdmittedLatency = quotaLatency(okLat)
	run.RefusedLatency = quotaLatency(refLat)
	run.Estimate = QuotaEstimate{Local: estimateError(local), Node: estimateError(node)}
	for _, n := range nodes {
		run.Nodes = append(run.Nodes, fetchQuotaStatus(ctx, client, n))
	}
	fmt.Fprintf(progress, "mode %s done: %d admitted, %d refused, %d errors; max sliding minute %d tokens (%.3f of TPM)\n",
		mode, run.Admitted, run.Refused, run.Errors, run.MaxWindowTokens, run.MaxWindowRatio)
	return run, nil
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
}

// quotaPrompt is one request a client keeps sending until it is admitted.
type quotaPrompt struct {
	body      []byte
	estimate  int   // package tokens' count of the messages
	allowance int64 // the completion allowance the node reserves
	nodeEst   int   // the node's prompt estimate from a refusal; 0 = none seen
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
		status, h, body, err := quotaPost(ctx, c.http, url, p.body)
		lat := time.Since(sent)
		s := quotaSample{at: sent.Sub(c.start), latency: lat, status: status}
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
			c.out.refused = append(c.out.refused, s)
			c.live.refused.Add(1)
			if est, ok := refusalEstimate(body); ok {
				p.nodeEst = int(est - p.allowance)
			}
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
	if v, err := strconv.ParseInt(h.Get("x-llmgate-tokens-consumed"), 10, 64); err == nil {
		s.tokens = v
	} else {
		s.tokens = resp.Usage.TotalTokens
	}
	if actual := resp.Usage.PromptTokens; actual > 0 {
		c.out.local = append(c.out.local, relErr(p.estimate, actual))
		if p.nodeEst > 0 {
			c.out.node = append(c.out.node, relErr(p.nodeEst, actual))
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
	n := quotaMinWords + c.rng.IntN(quotaMaxWords-quotaMinWords+1)
	words := make([]string, n)
	for i := range words {
		words[i] = quotaWords[c.rng.IntN(len(quotaWords))]
	}
	user := fmt.Sprintf("Request %d from client %d: %s.", c.rng.Uint32(), c.id, strings.Join(words, " "))
	msgs := []chatMessage{
		{Role: "system", Content: "You are a terse assistant used by a load test."},
		{Role: "user", Content: user},
	}
	req := struct {
		Model     string        `json:"model"`
		Messages  []chatMessage `json:"messages"`
		MaxTokens *int64        `json:"max_tokens,omitempty"`
	}{Model: quotaModel, Messages: msgs}
	p := &quotaPrompt{allowance: quotaDefaultAllowance}
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

// quotaPost sends one chat request and reads the whole answer.
func quotaPost(ctx context.Context, c *http.Client, url string, body []byte) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, defaultRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("api-key", quotaKey)
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

// fetchQuotaStatus reads GET /admin/quota/{consumer} from n's admin port.
func fetchQuotaStatus(ctx context.Context, c *http.Client, n *benchNode) QuotaNodeStatus {
	st := QuotaNodeStatus{Node: n.name}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.admin+"/admin/quota/"+quotaConsumer, nil)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	resp, err := c.Do(req)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		st.Error = fmt.Sprintf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(b[:min(len(b), 200)])))
		return st
	}
	if err := json.Unmarshal(b, &st); err != nil {
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

// WriteTable writes the report as an aligned text table, one column per mode.
func (r *QuotaReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "llmgate bench quota: %d node(s), %d clients of one consumer, TPM %d, %s per mode, %d CPU(s)\n\n",
		r.Nodes, r.Clients, r.TPM, r.Duration, r.CPUs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	const label = "%-34s"
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
	row("  average per minute of the run", func(q QuotaRun) string { return strconv.FormatFloat(q.TokensPerMinute, 'f', 0, 64) })
	row("  in the last 60s (clients)", func(q QuotaRun) string { return strconv.FormatInt(q.LastMinuteTokens, 10) })
	row("  tpm_used after run (admin)", func(q QuotaRun) string {
		var s []string
		for _, n := range q.Nodes {
			if n.Error != "" {
				s = append(s, n.Node+": error")
			} else {
				s = append(s, strconv.FormatInt(n.TPMUsed, 10))
			}
		}
		return strings.Join(s, ", ")
	})
	row("requests admitted (200)", func(q QuotaRun) string { return strconv.Itoa(q.Admitted) })
	row("  per second", func(q QuotaRun) string { return strconv.FormatFloat(q.AdmittedRPS, 'f', 2, 64) })
	row("requests refused (429)", func(q QuotaRun) string { return strconv.Itoa(q.Refused) })
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
	if _, err := fmt.Fprintf(w, "\nSliding minute: tokens consumed (x-llmgate-tokens-consumed) by admitted requests, by client send time; must stay <= 1.000 of TPM.\n"+
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

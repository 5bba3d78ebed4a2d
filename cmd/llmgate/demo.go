package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/mock"
	history "github.com/llmgate/llmgate/usage"
)

const (
	demoKey  = "sk-demo-team-a"
	demoKeyB = "sk-demo-team-b"
	demoKeyC = "sk-demo-team-c" // a small TPM, driven past it
	demoTPM  = 400
	demoKeyD = "sk-demo-team-d" // a small money budget, spent
	// demoBudget is team-d's daily budget in US dollars: about five
	// requests at gpt-4o's price.
	demoBudget = 0.0015
)

// demoStep is one scripted request and what the report expects of it.
type demoStep struct {
	title      string
	method     string
	path       string
	body       string
	key        string
	wantStatus int
	before     func() // changes the world before the request (e.g. fail a backend)
	stream     bool
	wantCache  string // expected x-llmgate-cache, when set
	headers    []string
	node       int // which node it is sent to: 0 = gw-1, 1 = gw-2
	// bodyFn, when set, gives the body at play time (it depends on an
	// earlier step's answer, e.g. a response id).
	bodyFn func() string
	// check, when set, is a further expectation on a non-streamed answer;
	// it may also note what later steps need from it.
	check func(r *demoRow, body []byte) bool
}

type demoRow struct {
	step            demoStep
	node            string
	status          int
	latency         time.Duration
	backend, cache  string
	detail          string
	ok              bool
	firstEventAfter time.Duration
	header          http.Header
	quota           string // remaining tokens, or the Retry-After of a refusal
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.Bool("v", false, "print the node's logs")
	if err := fs.Parse(args); err != nil {
		return err
	}

	east := mock.New(mock.Options{Name: "east", Latency: 20 * time.Millisecond, TokenRate: 400})
	west := mock.New(mock.Options{Name: "west", Latency: 20 * time.Millisecond, TokenRate: 400})
	eastURL, stopEast, err := serveLoopback(east)
	if err != nil {
		return err
	}
	defer stopEast()
	westURL, stopWest, err := serveLoopback(west)
	if err != nil {
		return err
	}
	defer stopWest()

	dir, err := os.MkdirTemp("", "llmgate-demo-")
	if err != nil {
		return fmt.Errorf("creating the demo data directory: %w", err)
	}
	defer os.RemoveAll(dir)

	logw := io.Discard
	if *verbose {
		logw = stderr
	}
	logger := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	issuer, err := startDemoIssuer()
	if err != nil {
		return err
	}
	defer issuer.stop()
	nodes, cfg, err := startDemoCluster(ctx, eastURL, westURL, dir, issuer.url, logger)
	if err != nil {
		return err
	}
	defer func() {
		for _, n := range nodes {
			_ = n.stop(context.Background())
		}
	}()
	fmt.Fprintf(stdout, "llmgate demo: mock upstreams east (primary) %s and west (secondary) %s\n", eastURL, westURL)
	for _, n := range nodes {
		fmt.Fprintf(stdout, "  node %s: data plane %s, gossip %s\n", n.cfg.Node.Name, n.dataAddr, n.cluster.Addr())
	}
	fmt.Fprintln(stdout)

	chat := func(model, content string) string {
		return `{"model":"` + model + `","messages":[{"role":"user","content":"` + content + `"}],"max_tokens":24}`
	}
	var retryAt time.Time
	// The TPM steps come first: honouring the Retry-After means waiting for
	// the oldest tokens to leave the 60-second window, and the other steps
	// run meanwhile.
	const driveBody = `{"model":"gpt-4o-mini","max_tokens":24,"messages":[{"role":"user","content":"Summarise our meeting notes"}]}`
	noCache := []string{"x-llmgate-cache", "off"}
	steps := []demoStep{
		{title: "cache: cold miss", method: "POST", path: "/v1/chat/completions", body: chat("gpt-4o", "How do I rotate the API key of my Azure OpenAI resource?"), key: demoKey, wantStatus: 200, wantCache: "miss"},
		{title: "cache: same prompt (exact hit)", method: "POST", path: "/v1/chat/completions", body: chat("gpt-4o", "How do I rotate the API key of my Azure OpenAI resource?"), key: demoKey, wantStatus: 200, wantCache: "hit"},
		{title: "cache: rewording (normalised hit)", method: "POST", path: "/v1/chat/completions", body: chat("gpt-4o", "how can I rotate the API key of my Azure OpenAI resource"), key: demoKey, wantStatus: 200, wantCache: "hit"},
		{title: "cache: paraphrase (semantic hit)", method: "POST", path: "/v1/chat/completions", body: chat("gpt-4o", "How do I rotate the API key for my Azure OpenAI resource?"), key: demoKey, wantStatus: 200, wantCache: "hit"},
		{title: "cache: swapped content word (guard: miss)", method: "POST", path: "/v1/chat/completions", body: chat("gpt-4o", "How do I delete the API key of my Azure OpenAI resource?"), key: demoKey, wantStatus: 200, wantCache: "miss"},
		{title: "cache: near miss the judge confirms (verified hit)", method: "POST", path: "/v1/chat/completions", body: chat("gpt-4o", "How would I rotate the API key of my Azure OpenAI resource?"), key: demoKey, wantStatus: 200, wantCache: "hit"},
		{title: "cache: near miss the judge refuses (miss)", method: "POST", path: "/v1/chat/completions", body: chat("gpt-4o", "How do I rotate the API key of the Azure OpenAI resource?"), key: demoKey, wantStatus: 200, wantCache: "miss"},
		{title: "cache: paraphrase on the other node (replicated hit)", node: 1, method: "POST", path: "/v1/chat/completions", body: chat("gpt-4o", "How do I rotate the API key for my Azure OpenAI resource?"), key: demoKey, wantStatus: 200, wantCache: "hit",
			before: func() { waitReplicated(nodes[1], 1, 5*time.Second) }},
		{title: "cache: negation (guard: miss)", method: "POST", path: "/v1/chat/completions", body: chat("gpt-4o", "How do I not rotate the API key of my Azure OpenAI resource?"), key: demoKey, wantStatus: 200, wantCache: "miss"},
		{title: "cache: other tenant (miss)", method: "POST", path: "/v1/chat/completions", body: chat("gpt-4o", "How do I rotate the API key of my Azure OpenAI resource?"), key: demoKeyB, wantStatus: 200, wantCache: "miss"},
		{title: "cache: stream replayed from the cache", method: "POST", path: "/v1/chat/completions", body: `{"model":"gpt-4o","stream":true,"max_tokens":24,"messages":[{"role":"user","content":"How do I rotate the API key of my Azure OpenAI resource?"}]}`, key: demoKey, wantStatus: 200, stream: true, wantCache: "hit"},
		{title: "chat, OpenAI style", method: "POST", path: "/v1/chat/completions", body: chat("gpt-4o", "What is a token bucket?"), key: demoKey, wantStatus: 200},
		{title: "chat, Azure style", method: "POST", path: "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", body: `{"messages":[{"role":"user","content":"Hello from an Azure SDK"}]}`, key: demoKey, wantStatus: 200},
		{title: "streaming chat (SSE, relayed event by event)", method: "POST", path: "/v1/chat/completions", body: `{"model":"gpt-4o-mini","stream":true,"max_tokens":40,"messages":[{"role":"user","content":"Stream me a story"}]}`, key: demoKey, wantStatus: 200, stream: true},
		{title: "embeddings", method: "POST", path: "/v1/embeddings", body: `{"model":"text-embedding-3-small","input":["alpha","beta"]}`, key: demoKey, wantStatus: 200},
		{title: "list models", method: "GET", path: "/v1/models", key: demoKey, wantStatus: 200},
		{title: "wrong key", method: "POST", path: "/v1/chat/completions", body: chat("gpt-4o", "hi"), key: "sk-wrong", wantStatus: 401},
		{title: "unknown model", method: "POST", path: "/v1/chat/completions", body: chat("gpt-9", "hi"), key: demoKey, wantStatus: 404},
		{title: "malformed JSON", method: "POST", path: "/v1/chat/completions", body: `{"model":"gpt-4o","messages":[`, key: demoKey, wantStatus: 400},
		{title: "primary fails (HTTP 500): failover to secondary", method: "POST", path: "/v1/chat/completions", body: chat("gpt-4o", "Are you there?"), key: demoKey, wantStatus: 200,
			before: func() { east.SetFailRate(1) }},
		{title: "primary's circuit is open: straight to secondary", method: "POST", path: "/v1/chat/completions", body: chat("gpt-4o", "Still there?"), key: demoKey, wantStatus: 200},
		{title: "primary recovers after the cooldown", method: "POST", path: "/v1/chat/completions", body: chat("gpt-4o", "Welcome back"), key: demoKey, wantStatus: 200,
			before: func() { east.SetFailRate(0); time.Sleep(cfg.Upstream.BreakerCooldown + 100*time.Millisecond) }},
		{title: "team-c honours Retry-After: admitted", node: 1, method: "POST", path: "/v1/chat/completions",
			body: driveBody, key: demoKeyC, wantStatus: 200, headers: noCache,
			before: func() {
				if wait := time.Until(retryAt); wait > 0 {
					fmt.Fprintf(stdout, "waiting %s, as team-c's Retry-After said…\n", wait.Round(time.Second))
					time.Sleep(wait)
				}
			}},
	}

	idSteps, err := demoIdentitySteps(nodes, issuer, chat("gpt-4o-mini", "Who am I?"))
	if err != nil {
		return err
	}
	for i, s := range steps {
		if s.title == "wrong key" { // identity steps beside the other credential step
			steps = slices.Insert(steps, i, idSteps...)
			break
		}
	}
	for i, s := range steps {
		if s.title == "wrong key" { // before the failover steps change the backends
			steps = slices.Insert(steps, i, demoResponsesSteps(nodes)...)
			break
		}
	}
	client := &http.Client{Timeout: 30 * time.Second}
	var rows []demoRow
	failed := 0
	send := func(s demoStep) demoRow { return playStep(ctx, client, "http://"+nodes[s.node].dataAddr, s) }
	record := func(row demoRow) {
		row.node = nodes[row.step.node].cfg.Node.Name
		if !row.ok {
			failed++
		}
		rows = append(rows, row)
	}
	play := func(s demoStep) { record(send(s)) }

	// team-c (TPM 400) from both nodes at once: one limit for the cluster.
	// A short refusal (the other node may be spending what is left) is
	// retried as told; the window's own 429 ends the drive.
	admitted, short := 0, 0
	for i := 0; i < 40 && ctx.Err() == nil; i++ {
		s := demoStep{title: fmt.Sprintf("team-c (TPM %d) alternating nodes", demoTPM), node: i % 2, method: "POST",
			path: "/v1/chat/completions", body: driveBody, key: demoKeyC, wantStatus: 200, headers: noCache}
		row := send(s)
		if row.status == http.StatusTooManyRequests {
			ms, _ := strconv.Atoi(row.header.Get("retry-after-ms"))
			if ms <= 1000 {
				short++
				time.Sleep(time.Duration(ms) * time.Millisecond)
				continue
			}
			s.title = fmt.Sprintf("team-c at its TPM over both nodes (%d admitted): 429", admitted)
			s.wantStatus = http.StatusTooManyRequests
			row.ok = row.status == http.StatusTooManyRequests && admitted <= demoTPM
			row.step = s
			record(row)
			if ms, err := strconv.Atoi(row.header.Get("retry-after-ms")); err == nil {
				retryAt = time.Now().Add(time.Duration(ms) * time.Millisecond)
			}
			break
		}
		used, _ := strconv.Atoi(row.header.Get("x-llmgate-tokens-consumed"))
		admitted += used
		record(row)
	}
	if retryAt.IsZero() {
		failed++
		fmt.Fprintln(stdout, "team-c was never refused by its TPM")
	}

	if demoBudgetDrive(ctx, nodes, send, record) < len(nodes) {
		failed++
		fmt.Fprintln(stdout, "team-d's budget did not end with a 403 on both nodes")
	}
	budgetGauge, ok := demoBudgetGauge(ctx, nodes[0])
	if !ok {
		failed++
	}

	for _, s := range steps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s.before != nil {
			s.before()
		}
		play(s)
	}
	printDemo(stdout, rows)
	if err := printUsage(ctx, stdout, nodes); err != nil {
		failed++
		fmt.Fprintln(stdout, err)
	}
	fmt.Fprintf(stdout, "\nbackend calls: east %d, west %d; team-c: %d tokens admitted over both nodes for a TPM of %d (%d short refusals retried while the other node's tokens were in flight)\n",
		east.Requests(), west.Requests(), admitted, demoTPM, short)
	fmt.Fprintf(stdout, "team-d: a $%g daily budget spent from both nodes; %s\n", demoBudget, budgetGauge)
	for _, n := range nodes {
		var alive []string
		for _, m := range n.cluster.Members() {
			alive = append(alive, m.Name+" "+m.State)
		}
		fmt.Fprintf(stdout, "%s sees: %s\n", n.cfg.Node.Name, strings.Join(alive, ", "))
	}
	if failed > 0 {
		return fmt.Errorf("demo: %d step(s) did not behave as expected", failed)
	}
	fmt.Fprintln(stdout, "demo: every step behaved as expected")
	return nil
}

// startDemoCluster starts gw-1 and gw-2 (which joins gw-1) and waits until
// each sees the other.
func startDemoCluster(ctx context.Context, eastURL, westURL, dir, issuerURL string, logger *slog.Logger) ([]*runningNode, *config.Config, error) {
	var nodes []*runningNode
	var seeds []string
	for _, name := range []string{"gw-1", "gw-2"} {
		cfg := demoConfig(eastURL, westURL, dir, name, seeds)
		cfg.Auth.JWT = []config.JWTIssuer{{Issuer: issuerURL, Audience: "api://llmgate-demo", UserClaim: "oid"}}
		cfg.Consumers[0].ClientIDs = []string{demoClientID}
		cfg.ApplyDefaults()
		n, err := startNode(cfg, logger.With("node", name))
		if err != nil {
			for _, n := range nodes {
				_ = n.stop(context.Background())
			}
			return nil, nil, fmt.Errorf("starting demo node %s: %w", name, err)
		}
		nodes = append(nodes, n)
		seeds = []string{n.cluster.Addr()}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		joined := true
		for _, n := range nodes {
			alive := 0
			for _, m := range n.cluster.Members() {
				if m.State == "alive" {
					alive++
				}
			}
			joined = joined && alive == len(nodes)
		}
		if joined {
			return nodes, nodes[0].cfg, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			for _, n := range nodes {
				_ = n.stop(context.Background())
			}
			return nil, nil, errors.New("demo nodes did not see each other within 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitReplicated waits until n's cache holds at least entries entries.
func waitReplicated(n *runningNode, entries int64, within time.Duration) {
	deadline := time.Now().Add(within)
	for n.state.cache != nil && n.state.cache.Stats().Entries < entries && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

func demoConfig(eastURL, westURL, dir, name string, seeds []string) *config.Config {
	cfg := &config.Config{
		Node:        config.Node{Name: name, DataDir: dir + "/" + name},
		Cluster:     config.Cluster{Gossip: "127.0.0.1:0", Join: seeds},
		Listen:      "127.0.0.1:0",
		AdminListen: "127.0.0.1:0",
		Backends: []config.Backend{
			{Name: "east", Kind: config.KindAzure, URL: eastURL, APIKey: "east-upstream-key"},
			{Name: "west", Kind: config.KindOpenAI, URL: westURL + "/v1", APIKey: "west-upstream-key"},
		},
		Routes: map[string]config.Route{
			"gpt-4o":                 {Pool: [][]string{{"east"}, {"west"}}, Price: config.Price{InputPer1M: 2.50, OutputPer1M: 10.00, CachedInputPer1M: 1.25}},
			"gpt-4o-mini":            {Pool: [][]string{{"east", "west"}}, Price: config.Price{InputPer1M: 0.15, OutputPer1M: 0.60}},
			"text-embedding-3-small": {Pool: [][]string{{"east"}}, Price: config.Price{InputPer1M: 0.02}},
		},
		Consumers: []config.Consumer{
			{Name: "team-a", Keys: []string{demoKey}},
			{Name: "team-b", Keys: []string{demoKeyB}},
			{Name: "team-c", Keys: []string{demoKeyC}, TPM: demoTPM},
			{Name: "team-d", Keys: []string{demoKeyD}, Quota: config.Quota{USD: demoBudget, Period: "daily"}},
		},
	}
	cfg.Cache.Enabled = true
	cfg.Cache.StoreWait = time.Second // the next step must find the entry, however slow the machine
	// Verified matching with the mock upstream as the judge (its rule: the
	// same words once case, punctuation and filler words are dropped).
	cfg.Cache.Verify = &config.CacheVerify{Route: "gpt-4o-mini"}
	cfg.Upstream.BreakerFailures = 1
	cfg.Upstream.BreakerCooldown = time.Second
	cfg.ApplyDefaults()
	return cfg
}

func playStep(ctx context.Context, client *http.Client, base string, s demoStep) demoRow {
	row := demoRow{step: s}
	if s.bodyFn != nil {
		s.body = s.bodyFn()
	}
	req, err := http.NewRequestWithContext(ctx, s.method, base+s.path, strings.NewReader(s.body))
	if err != nil {
		row.detail = err.Error()
		return row
	}
	if s.key != "" {
		req.Header.Set("api-key", s.key)
	}
	if s.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(s.headers); i += 2 {
		req.Header.Set(s.headers[i], s.headers[i+1])
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		row.detail = err.Error()
		return row
	}
	defer resp.Body.Close()
	row.status = resp.StatusCode
	row.header = resp.Header
	row.backend = resp.Header.Get("x-llmgate-backend")
	row.cache = resp.Header.Get("x-llmgate-cache")
	if d := resp.Header.Get("x-llmgate-cache-distance"); d != "" && row.cache == "hit" {
		row.cache += " d=" + d
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" && resp.StatusCode == http.StatusTooManyRequests {
		row.quota = "retry in " + ra + "s"
	} else if rem := resp.Header.Get("x-ratelimit-remaining-tokens"); rem != "" {
		row.quota = rem + "/" + resp.Header.Get("x-ratelimit-limit-tokens") + " left"
	}
	cacheOK := s.wantCache == "" || resp.Header.Get("x-llmgate-cache") == s.wantCache
	if s.stream && resp.StatusCode == 200 {
		events, done := 0, false
		var typed []string // the Responses API's event types, in order
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if typ, ok := strings.CutPrefix(line, "event:"); ok {
				typed = append(typed, strings.TrimSpace(typ))
			}
			if strings.HasPrefix(line, "data:") {
				if events == 0 {
					row.firstEventAfter = time.Since(start)
				}
				events++
				done = done || strings.TrimSpace(strings.TrimPrefix(line, "data:")) == "[DONE]"
			}
		}
		row.detail = fmt.Sprintf("%d events, first after %s, [DONE]=%v", events, row.firstEventAfter.Round(time.Millisecond), done)
		if len(typed) > 0 {
			// Typed events end with the terminal one, not [DONE]; every
			// data line must have had its type.
			done = typed[len(typed)-1] == "response.completed" && len(typed) == events
			row.detail = fmt.Sprintf("%d typed events, %s … %s, first after %s", events, typed[0], typed[len(typed)-1], row.firstEventAfter.Round(time.Millisecond))
		}
		row.latency = time.Since(start)
		row.ok = done && s.wantStatus == resp.StatusCode && cacheOK
		return row
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	row.latency = time.Since(start)
	row.detail = summarize(body)
	row.ok = resp.StatusCode == s.wantStatus && cacheOK
	if s.check != nil {
		row.ok = s.check(&row, body) && row.ok
	}
	return row
}

// summarize shortens a body for the report: the error code, or the reply's text.
func summarize(body []byte) string {
	if r, ok := summarizeResponse(body); ok {
		return r
	}
	s := string(body)
	if i := strings.Index(s, `"code":"`); i >= 0 && strings.Contains(s, `"error"`) {
		rest := s[i+8:]
		if j := strings.IndexByte(rest, '"'); j >= 0 {
			return "error " + rest[:j]
		}
	}
	if i := strings.Index(s, `"content":"`); i >= 0 {
		rest := s[i+11:]
		if j := strings.IndexByte(rest, '"'); j >= 0 {
			rest = rest[:j]
		}
		if len(rest) > 40 {
			rest = rest[:40] + "…"
		}
		return "“" + rest + "”"
	}
	if strings.Contains(s, `"embedding"`) {
		return fmt.Sprintf("%d embeddings", strings.Count(s, `"object":"embedding"`))
	}
	if strings.Contains(s, `"object":"list"`) {
		return fmt.Sprintf("%d models", strings.Count(s, `"object":"model"`))
	}
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}

func printDemo(w io.Writer, rows []demoRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tstep\tnode\tstatus\tlatency\tbackend\tcache\tquota\tresult\tas expected")
	for i, r := range rows {
		ok := "yes"
		if !r.ok {
			ok = fmt.Sprintf("NO (want %d", r.step.wantStatus)
			if r.step.wantCache != "" {
				ok += ", cache " + r.step.wantCache
			}
			ok += ")"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", i+1, r.step.title, r.node, r.status,
			r.latency.Round(10*time.Microsecond), dash(r.backend), dash(r.cache), dash(r.quota), r.detail, ok)
	}
	_ = tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// serveLoopback serves h on a random loopback port.
func serveLoopback(h http.Handler) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listening on loopback: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("demo server stopped", "err", err)
		}
	}()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// printUsage prints the usage history by consumer as each node answers
// /admin/usage: the same cluster-wide rows on both, whichever node served.
func printUsage(ctx context.Context, w io.Writer, nodes []*runningNode) error {
	q := history.Query{From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour), Interval: 24 * time.Hour, GroupBy: []string{history.ByConsumer}}
	sum := func(n *runningNode) ([]history.Line, error) { return n.state.history.Query(ctx, q) }
	// Rows travel with the quota news: give them a moment.
	var first, second []history.Line
	deadline := time.Now().Add(5 * time.Second)
	for {
		var err error
		if first, err = sum(nodes[0]); err != nil {
			return fmt.Errorf("usage history of %s: %w", nodes[0].cfg.Node.Name, err)
		}
		if second, err = sum(nodes[1]); err != nil {
			return fmt.Errorf("usage history of %s: %w", nodes[1].cfg.Node.Name, err)
		}
		if slices.Equal(first, second) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintf(w, "\nusage history (GET /admin/usage?group_by=consumer), as %s answers it:\n", nodes[1].cfg.Node.Name)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "consumer\trequests\tprompt tokens\tcompletion tokens\tcache hits\ttokens saved\tcost (USD)\trefused")
	for _, l := range second {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%.6f\t%d\n", l.Consumer, l.Requests, l.Prompt, l.Completion, l.CacheHits, l.Saved, l.CostUSD(), l.Refused)
	}
	_ = tw.Flush()
	if !slices.Equal(first, second) {
		return fmt.Errorf("the two nodes' usage histories differ: %v and %v", first, second)
	}
	return nil
}

package bench

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestOverheadOptionsFeatures(t *testing.T) {
	o, err := OverheadOptions{Executable: "llmgate"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Features) != 1 || o.Features[0] != FeatureKeys {
		t.Errorf("default features = %v, want keys only", o.Features)
	}
	for _, bad := range [][]Feature{{"bogus"}, {FeatureTPM, FeatureTPM}} {
		if _, err := (OverheadOptions{Executable: "llmgate", Features: bad}).withDefaults(); err == nil {
			t.Errorf("features %v accepted", bad)
		}
	}
}

func TestFeatureConfigAddsUp(t *testing.T) {
	base := gatewayConfig("/tmp/x/data", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4", overheadKey, "")
	tests := []struct {
		feature        Feature
		tpm, cacheOn   bool
		cacheHeaderOff bool
	}{
		{FeatureKeys, false, false, true},
		{FeatureTPM, true, false, true},
		{FeatureCacheMiss, true, true, false},
		{FeatureCacheHit, true, true, false},
		{FeatureTelemetry, false, false, true},
		{FeatureOTLP, false, false, true},
		{FeatureOTLPSampled, false, false, true},
		{FeatureResponses, true, false, true},
	}
	for _, tt := range tests {
		t.Run(string(tt.feature), func(t *testing.T) {
			cfg := featureConfig(base, tt.feature, "http://127.0.0.1:6")
			if got := strings.Contains(cfg, "tpm: 1000000000}"); got != tt.tpm {
				t.Errorf("tpm limit present = %v, want %v:\n%s", got, tt.tpm, cfg)
			}
			if got := strings.Contains(cfg, "cache: {enabled: true}"); got != tt.cacheOn {
				t.Errorf("cache on = %v, want %v", got, tt.cacheOn)
			}
			telemetry := tt.feature == FeatureTelemetry || tt.feature == FeatureOTLP || tt.feature == FeatureOTLPSampled
			if got := !strings.Contains(cfg, "usage_history: false") && strings.Contains(cfg, "log: {level: info}"); got != telemetry {
				t.Errorf("request log and usage history on = %v, want %v:\n%s", got, telemetry, cfg)
			}
			if got := strings.Contains(cfg, `otlp_endpoint: "http://127.0.0.1:6"`); got != (tt.feature == FeatureOTLP || tt.feature == FeatureOTLPSampled) {
				t.Errorf("otlp on = %v:\n%s", got, cfg)
			}
			r := featureRequest("127.0.0.1:5", tt.feature)
			if got := r.Header.Get("x-llmgate-cache") == "off"; got != tt.cacheHeaderOff {
				t.Errorf("x-llmgate-cache off = %v, want %v", got, tt.cacheHeaderOff)
			}
		})
	}
}

func TestCacheMissBodiesAreUniqueChatRequests(t *testing.T) {
	r := featureRequest("127.0.0.1:5", FeatureCacheMiss)
	seen := map[string]bool{}
	for range 1000 {
		b := r.NextBody()
		var req struct {
			Model    string `json:"model"`
			Messages []struct{ Role, Content string }
		}
		if err := json.Unmarshal(b, &req); err != nil || req.Model == "" || len(req.Messages) != 1 {
			t.Fatalf("body %s is not a chat request: %v", b, err)
		}
		if seen[req.Messages[0].Content] {
			t.Fatalf("prompt %q sent twice", req.Messages[0].Content)
		}
		seen[req.Messages[0].Content] = true
	}
}

func TestOverheadBodyIsAChatRequest(t *testing.T) {
	var req struct {
		Messages []struct{ Role, Content string }
	}
	if err := json.Unmarshal([]byte(overheadBody), &req); err != nil || len(req.Messages) != 2 {
		t.Fatalf("overhead body: %v", err)
	}
}

func TestResponsesBodyAsksWhatTheChatBodyAsks(t *testing.T) {
	var chat struct {
		Model     string `json:"model"`
		MaxTokens int    `json:"max_tokens"`
		Messages  []struct{ Role, Content string }
	}
	var resp struct {
		Model           string `json:"model"`
		Instructions    string `json:"instructions"`
		Input           string `json:"input"`
		MaxOutputTokens int    `json:"max_output_tokens"`
	}
	if err := json.Unmarshal([]byte(overheadBody), &chat); err != nil || len(chat.Messages) != 2 {
		t.Fatalf("overhead body: %v", err)
	}
	if err := json.Unmarshal([]byte(responsesBody), &resp); err != nil {
		t.Fatalf("responses body: %v", err)
	}
	if resp.Model != chat.Model || resp.Instructions != chat.Messages[0].Content || resp.Input != chat.Messages[1].Content || resp.MaxOutputTokens != chat.MaxTokens {
		t.Errorf("responses body %+v does not ask what the chat body asks %+v", resp, chat)
	}
	r := featureRequest("127.0.0.1:5", FeatureResponses)
	if r.URL != "http://127.0.0.1:5/v1/responses" || string(r.Body) != responsesBody {
		t.Errorf("responses feature sends %s %s", r.URL, r.Body)
	}
}

func TestResponsesComparedWithChat(t *testing.T) {
	rows := []FeatureRow{
		{Target: featureTarget(FeatureTPM), AddedP50Ms: 0.40, RPS: 8000, CPUMicros: 100},
		{Target: featureTarget(FeatureResponses), AddedP50Ms: 0.42, RPS: 7600, CPUMicros: 108},
	}
	c := compareFeatures(rows, FeatureResponses, FeatureTPM)
	near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
	if c == nil || !near(c.AddedP50, 1.05) || !near(c.RPS, 0.95) || !near(c.CPU, 1.08) {
		t.Fatalf("comparison %+v, want +p50 1.05, rps 0.95, cpu 1.08", c)
	}
	if compareFeatures(rows[:1], FeatureResponses, FeatureTPM) != nil {
		t.Error("a comparison without the responses target")
	}
	var b strings.Builder
	if err := (&OverheadReport{ResponsesVsChat: c}).WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "llmgate+responses / llmgate+tpm") || !strings.Contains(b.String(), "CPU/req 1.08x") {
		t.Errorf("table lacks the comparison:\n%s", b.String())
	}
}

// The node's req/s is also read against the mock's own for the same API,
// round by round: a mock that answers Responses more slowly than chat
// lowers the Responses node's raw req/s without the node costing more.
func TestResponsesThroughputOverTheMocksOwn(t *testing.T) {
	rounds := func(rps ...float64) []*ThroughputResult {
		var out []*ThroughputResult
		for _, r := range rps {
			out = append(out, &ThroughputResult{RPS: r})
		}
		return out
	}
	tput := map[string][]*ThroughputResult{
		TargetDirect:                    rounds(10000, 6000, 8000),
		TargetDirectResponses:           rounds(8000, 4000, 6000),
		featureTarget(FeatureTPM):       rounds(5000, 3000, 4000), // 0.5 of direct every round
		featureTarget(FeatureResponses): rounds(4000, 2000, 2700), // 0.5, 0.5, 0.45 of direct+responses
	}
	c := &Comparison{Target: featureTarget(FeatureResponses), Base: featureTarget(FeatureTPM), RPS: 0.7}
	overDirect(c, tput, TargetDirectResponses, TargetDirect)
	near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
	if !near(c.TargetOverDirect, 0.5) || !near(c.BaseOverDirect, 0.5) || !near(c.RPSOverDirect, 1) {
		t.Fatalf("comparison %+v, want 0.5 / 0.5 = 1", c)
	}
	var b strings.Builder
	if err := (&OverheadReport{ResponsesVsChat: c}).WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "req/s 0.70x") || !strings.Contains(b.String(), "over the mock's own for its API") || !strings.Contains(b.String(), ": 1.00x") {
		t.Errorf("table lacks the raw ratio or the one over the mock's own:\n%s", b.String())
	}
	none := &Comparison{Target: featureTarget(FeatureResponses), Base: featureTarget(FeatureTPM)}
	overDirect(none, map[string][]*ThroughputResult{}, TargetDirectResponses, TargetDirect)
	if none.RPSOverDirect != 0 {
		t.Errorf("a ratio without the direct targets: %+v", none)
	}
}

func TestDirectResponsesIsABaseline(t *testing.T) {
	r := &LatencyResult{}
	r.Latency.P50 = 2 * time.Millisecond
	if row := latencyRow(TargetDirectResponses, 500, []*LatencyResult{r}, []*LatencyResult{r}); row.AddedP50Ms != nil {
		t.Error("direct+responses has an added latency, as if it went through something")
	}
}

func TestFeatureRowsAreRatiosToTheProxy(t *testing.T) {
	p := func(v float64) *float64 { return &v }
	rep := &OverheadReport{
		Latency: []LatencyRow{
			{Target: TargetReverseProxy, Rate: 500, AddedP50Ms: p(0.25)},
			{Target: TargetReverseProxy, Rate: 1000, AddedP50Ms: p(9)},
			{Target: featureTarget(FeatureTPM), Rate: 500, AddedP50Ms: p(0.30)},
		},
		Throughput: []ThroughputRow{
			{Target: TargetDirect, RPS: 20000},
			{Target: TargetReverseProxy, RPS: 10000, CPUMicros: 100},
			{Target: featureTarget(FeatureTPM), RPS: 9000, CPUMicros: 120},
		},
	}
	rows := featureRows(rep, 500)
	if len(rows) != 1 {
		t.Fatalf("%d rows, want one per llmgate target", len(rows))
	}
	r := rows[0]
	near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
	if !near(r.VsProxyP50, 1.2) || !near(r.VsProxyRPS, 0.9) || !near(r.VsProxyCPU, 1.2) {
		t.Errorf("ratios p50 %.3f, rps %.3f, cpu %.3f; want 1.2, 0.9, 1.2", r.VsProxyP50, r.VsProxyRPS, r.VsProxyCPU)
	}
	var b strings.Builder
	rep.Features = rows
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"llmgate+tpm", "1.20x", "0.90x", "120µs"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestSlicesThatScheduleNoRequestAreRefused(t *testing.T) {
	tests := []struct {
		name   string
		slices int
		ok     bool
	}{
		{"one slice by default", 0, true},
		{"a slice of a request or more", 5, true},
		{"slices shorter than a request", 6, false},
		{"negative slices", -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// 5 requests in all: 10ms at 500 req/s.
			_, err := OverheadOptions{Executable: "llmgate", Rates: []int{500}, Duration: 10 * time.Millisecond, Slices: tt.slices}.withDefaults()
			if (err == nil) != tt.ok {
				t.Errorf("slices %d: error %v, want ok %v", tt.slices, err, tt.ok)
			}
		})
	}
}

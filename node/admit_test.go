package node

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/quota"
)

// prompt500 is a chat request whose prompt is about 500 tokens.
func prompt500(tb testing.TB) *Call {
	tb.Helper()
	text := strings.Repeat("The gateway counts every prompt before it forwards it, and settles after. ", 35)
	body, _ := json.Marshal(map[string]any{"model": "gpt-4o", "max_tokens": 200, "messages": []map[string]string{{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}}})
	r, e := openai.ParseChat(body)
	if e != nil {
		tb.Fatal(e)
	}
	return &Call{Op: openai.OpChat, Route: "gpt-4o", Model: "gpt-4o", Body: body, Chat: r, Consumer: &Consumer{Name: "team-a", CounterKey: config.CounterConsumer}, Header: http.Header{}}
}

// oneRouteNode is what the admission, cache and miss-path tests build a
// Gateway from: a limiter in which team-a may use 2^40 tokens a minute, and
// a config with one openai backend, one route (gpt-4o) and team-a's key "k",
// to which a test adds its own settings before ApplyDefaults.
func oneRouteNode(tb testing.TB) (*quota.Limiter, *config.Config) {
	tb.Helper()
	l, err := quota.Open(quota.Options{}, map[string]quota.Limits{"team-a": {TPM: 1 << 40}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	return l, &config.Config{
		Backends:  []config.Backend{{Name: "b", Kind: "openai", URL: "http://127.0.0.1:1/v1"}},
		Routes:    map[string]config.Route{"gpt-4o": {Pool: [][]string{{"b"}}}},
		Consumers: []config.Consumer{{Name: "team-a", Keys: []string{"k"}}},
	}
}

func admitGateway(tb testing.TB) *Gateway {
	tb.Helper()
	l, cfg := oneRouteNode(tb)
	cfg.ApplyDefaults()
	g, err := New(cfg, Options{Limiter: l})
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

func TestAdmitEstimate(t *testing.T) {
	g := admitGateway(t)
	call := prompt500(t)
	a, e := g.admit(context.Background(), call)
	if e != nil {
		t.Fatal(e)
	}
	if a.prompt < 450 || a.prompt > 600 || a.tokens != a.prompt+200 {
		t.Errorf("prompt %d, reserved %d: want ≈500 and prompt+max_tokens", a.prompt, a.tokens)
	}
}

// BenchmarkAdmit is the admit stage for a 500-token prompt: counting plus
// the reservation (settled at once, as a reply would).
func BenchmarkAdmit(b *testing.B) {
	g := admitGateway(b)
	call := prompt500(b)
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		a, _ := g.admit(ctx, call)
		lat = append(lat, time.Since(start))
		g.limiter.SettleAsync(a.res, a.tokens)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkReserveOnly is the reservation alone, the cost on top of counting.
func BenchmarkReserveOnly(b *testing.B) {
	g := admitGateway(b)
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		res, _, _ := g.limiter.ReserveWithin(ctx, admitTimeout, "team-a", "", 700)
		lat = append(lat, time.Since(start))
		g.limiter.SettleAsync(res, 700)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1000, "p99-µs")
}

// hugeCall is a chat call whose one message is a one-word prompt of n bytes.
func hugeCall(tb testing.TB, n int) *Call {
	tb.Helper()
	body, _ := json.Marshal(map[string]any{"model": "gpt-4o", "messages": []map[string]string{{"role": "user", "content": strings.Repeat("a", n)}}})
	r, e := openai.ParseChat(body)
	if e != nil {
		tb.Fatal(e)
	}
	return &Call{Op: openai.OpChat, Route: "gpt-4o", Model: "gpt-4o", Body: body, Chat: r, Consumer: &Consumer{Name: "team-a", CounterKey: config.CounterConsumer}, Header: http.Header{}}
}

func limitedGateway(tb testing.TB, tpm int64) *Gateway {
	tb.Helper()
	g := admitGateway(tb)
	l, err := quota.Open(quota.Options{}, map[string]quota.Limits{"team-a": {TPM: tpm}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	g.limiter = l
	return g
}

func TestHugePromptIsRefusedByItsLength(t *testing.T) {
	g := limitedGateway(t, 20000)
	e := g.refuseByLength(context.Background(), hugeCall(t, 4_000_000))
	if e == nil || e.Status != http.StatusTooManyRequests || !strings.Contains(e.Message, "by its length alone") ||
		e.Header.Get(HeaderShouldRetry) != "false" {
		t.Fatalf("a 4 MB prompt against 20000 TPM: %+v", e)
	}
	// 4 MB of 'a' is 31250 tokens at the least; a limit above that must not
	// be refused by length (the count decides).
	if e := g.refuseByLength(context.Background(), hugeCall(t, 1_000_000)); e != nil {
		t.Fatalf("a 1 MB prompt (at least 7813 tokens) refused by length under 20000 TPM: %s", e.Message)
	}
}

func TestPromptFloorIsALowerBound(t *testing.T) {
	g := admitGateway(t)
	for _, tc := range []struct {
		text     string
		positive bool // plain text: the floor says something
	}{
		{strings.Repeat(" ", 100_000), true},
		{strings.Repeat("a", 100_000), true},
		{strings.Repeat("The quick brown fox. ", 5000), true},
		{strings.Repeat("\u00e9\u4e2d\U0001F600", 10000), true},
		{strings.Repeat("\\\"\n\t", 10000), false}, // all escapes: the decoded floor gives up
	} {
		text := tc.text
		body, _ := json.Marshal(map[string]any{"model": "gpt-4o", "messages": []map[string]string{{"role": "user", "content": text}}})
		r, e := openai.ParseChat(body)
		if e != nil {
			t.Fatal(e)
		}
		call := &Call{Op: openai.OpChat, Route: "gpt-4o", Body: body, Chat: r}
		floor, _ := promptFloor(call)
		if prompt, _ := g.estimate(call); floor > prompt || tc.positive && floor == 0 {
			t.Fatalf("floor %d against a count of %d for %.20q", floor, prompt, text)
		}
	}
}

// lengthBodies are requests whose texts are the worst cases for a length
// bound: the longest tokens (runs of 128 spaces), one token per byte,
// escapes, multi-byte runes, images and audio beside text.
func lengthBodies() []struct {
	op   openai.Operation
	body string
} {
	spaces := strings.Repeat(" ", 128*300)
	esc := strings.Repeat(`\n\"\u00e9\\`, 2000)
	image := `{"type":"image_url","image_url":{"url":"data:image/png;base64,` + strings.Repeat("iVBORw0KGgo", 5000) + `"}}`
	return []struct {
		op   openai.Operation
		body string
	}{
		{openai.OpChat, `{"model":"gpt-4o","messages":[{"role":"user","content":"` + spaces + `"}]}`},
		{openai.OpChat, `{"model":"gpt-4o","messages":[{"role":"system","content":"` + spaces + `"},{"role":"user","content":[{"type":"text","text":"` + spaces + `"},` + image + `]}]}`},
		{openai.OpChat, `{"model":"gpt-4o","messages":[{"role":"user","content":"` + esc + `"}]}`},
		{openai.OpChat, `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("\u00e9\u4e2d\U0001F600", 3000) + `"}]}`},
		{openai.OpChat, `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("xyzzy plugh ", 8000) + `"}]}`},
		{openai.OpEmbeddings, `{"model":"gpt-4o","input":["` + spaces + `","` + esc + `"]}`},
		{openai.OpEmbeddings, `{"model":"gpt-4o","input":[` + strings.Repeat("[1,2,3],", 5000) + `[4]]}`},
		{openai.OpResponses, `{"model":"gpt-4o","instructions":"` + spaces + `","input":"` + spaces + `"}`},
		{openai.OpResponses, `{"model":"gpt-4o","instructions":"` + spaces + `","input":[{"role":"user","content":[{"type":"input_text","text":"` + spaces + `"},{"type":"input_image","image_url":"data:image/png;base64,AAAA"}]}]}`},
		{openai.OpResponses, `{"model":"gpt-4o","input":[{"type":"function_call","name":"f","arguments":"` + spaces + `"},{"type":"function_call_output","output":"` + esc + `"},{"type":"reasoning","summary":[],"content":"` + spaces + `"}]}`},
	}
}

// parseCall parses body as a request of op, as api does.
func parseCall(op openai.Operation, body []byte) (*Call, bool) {
	call := &Call{Op: op, Route: "gpt-4o", Body: body}
	switch op {
	case openai.OpChat:
		r, e := openai.ParseChat(body)
		call.Chat = r
		return call, e == nil
	case openai.OpEmbeddings:
		r, e := openai.ParseEmbeddings(body)
		call.Embeddings = r
		return call, e == nil
	default:
		r, e := openai.ParseResponses(body)
		call.Responses = r
		return call, e == nil
	}
}

// checkFloorBelowCount fails when the length pass over body bounds its
// prompt above the count admission makes of it: the refusal by length
// would then refuse what the count admits.
func checkFloorBelowCount(t *testing.T, g *Gateway, op openai.Operation, body []byte) {
	t.Helper()
	call, ok := parseCall(op, body)
	if !ok {
		return // refused by the parse whatever the length says
	}
	f := openai.ScanPromptFloor(op, body)
	floor := floorTokens(f.TextBytes, f.Tokens)
	prompt, _ := g.estimate(call)
	if floor > prompt {
		t.Fatalf("%s: length floor %d tokens (%+v) above the count %d for %.200q", op, floor, f, prompt, body)
	}
	if old, _ := promptFloor(call); old > prompt {
		t.Fatalf("%s: decoded floor %d above the count %d for %.200q", op, old, prompt, body)
	}
}

func TestLengthFloorNeverExceedsTheCount(t *testing.T) {
	g := admitGateway(t)
	for _, tc := range lengthBodies() {
		body := []byte(tc.body)
		if _, ok := parseCall(tc.op, body); !ok {
			t.Fatalf("%s: a test body does not parse: %.100s", tc.op, body)
		}
		if f := openai.ScanPromptFloor(tc.op, body); f.TextBytes == 0 && f.Tokens == 0 {
			t.Fatalf("%s: the length pass found no text in %.100s", tc.op, body)
		}
		checkFloorBelowCount(t, g, tc.op, body)
	}
}

func FuzzLengthFloorBelowCount(f *testing.F) {
	for _, tc := range lengthBodies() {
		f.Add(uint8(tc.op), []byte(tc.body[:min(len(tc.body), 2000)]))
	}
	f.Add(uint8(openai.OpChat), []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":[{"text":"     ","type":"text"}]}]}`))
	g := admitGateway(f)
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		checkFloorBelowCount(t, g, openai.Operation(op%3)+openai.OpChat, body)
	})
}

func TestRefuseByLengthBeforeDecoding(t *testing.T) {
	g := limitedGateway(t, 20000)
	c := &Consumer{Name: "team-a", CounterKey: config.CounterConsumer}
	ctx := context.Background()
	text := strings.Repeat("a", 4_000_000)
	image := `{"type":"image_url","image_url":{"url":"data:image/png;base64,` + strings.Repeat("A", 4_000_000) + `"}}`
	for _, tc := range []struct {
		name   string
		op     openai.Operation
		body   string
		refuse bool
	}{
		{"a 4 MB string content", openai.OpChat, `{"model":"gpt-4o","messages":[{"role":"user","content":"` + text + `"}]}`, true},
		{"a 4 MB text part", openai.OpChat, `{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"` + text + `"}]}]}`, true},
		{"a 4 MB image beside a short text is not text", openai.OpChat, `{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"what is this?"},` + image + `]}]}`, false},
		{"a 4 MB embeddings input", openai.OpEmbeddings, `{"model":"gpt-4o","input":"` + text + `"}`, true},
		{"a 4 MB Responses input", openai.OpResponses, `{"model":"gpt-4o","input":"` + text + `"}`, true},
		{"1 MB fits 20000 tokens by its length: the count decides", openai.OpChat, `{"model":"gpt-4o","messages":[{"role":"user","content":"` + text[:1_000_000] + `"}]}`, false},
		{"a body the pass cannot follow is left to the parse", openai.OpChat, `{"model":"gpt-4o","messages":[{"role":"user","content":"` + text, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, e := g.RefuseByLength(ctx, c, tc.op, []byte(tc.body))
			if tc.refuse != (e != nil) {
				t.Fatalf("refused = %v, want %v (%+v)", e != nil, tc.refuse, e)
			}
			if e != nil && (e.Status != http.StatusTooManyRequests || !strings.Contains(e.Message, "by its length alone") || e.Header.Get(HeaderShouldRetry) != "false") {
				t.Fatalf("refusal %+v", e)
			}
		})
	}
	if _, e := limitedGateway(t, 0).RefuseByLength(ctx, c, openai.OpChat, []byte(`{"messages":[{"role":"user","content":"`+text+`"}]}`)); e != nil {
		t.Fatalf("a consumer without a TPM limit refused by length: %s", e.Message)
	}
}

// BenchmarkRefuseHugePrompt is the length check refusing a 4 MB one-word
// prompt against a 20000 TPM limit (the whole request: api's BenchmarkHugePromptRefusal).
func BenchmarkRefuseHugePrompt(b *testing.B) {
	g := limitedGateway(b, 20000)
	call := hugeCall(b, 4_000_000)
	b.ResetTimer()
	for b.Loop() {
		if e := g.refuseByLength(context.Background(), call); e == nil {
			b.Fatal("admitted")
		}
	}
}

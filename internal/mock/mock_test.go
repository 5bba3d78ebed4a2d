package mock

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiktoken-go/tokenizer"

	"github.com/llmgate/llmgate/internal/embed"
	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/internal/tokens"
)

const azureChat = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"

func newTestServer(t *testing.T, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	s := New(opts)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts
}

func post(t *testing.T, ts *httptest.Server, path, body string) (*http.Response, []byte) {
	t.Helper()
	return do(t, ts, http.MethodPost, path, body, nil)
}

func do(t *testing.T, ts *httptest.Server, method, path, body string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading answer of %s %s: %v", method, path, err)
	}
	return resp, b
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

type completion struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Type    string `json:"type"`
	} `json:"error"`
}

var testMessages = []openai.Message{
	{Role: "system", Content: json.RawMessage(`"You are a helpful assistant."`)},
	{Role: "user", Content: json.RawMessage(`"What is the capital of France?"`)},
}

const testMessagesJSON = `[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"What is the capital of France?"}]`

func TestWordsAreOneToken(t *testing.T) {
	for _, enc := range []tokenizer.Encoding{tokenizer.O200kBase, tokenizer.Cl100kBase} {
		codec, err := tokenizer.Get(enc)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range words {
			capital := strings.ToUpper(w[:1]) + w[1:]
			for _, form := range []string{w, " " + w, capital, " " + capital} {
				if n, _ := codec.Count(form); n != 1 {
					t.Errorf("%s: %q is %d tokens, every generated word must be one", enc, form, n)
				}
			}
		}
	}
}

func TestGenerateIsExactLength(t *testing.T) {
	c := tokens.NewCounter()
	for _, model := range []string{"gpt-4o", "gpt-4"} {
		for length := 1; length <= 120; length++ {
			for seed := range uint64(4) {
				for _, stop := range []bool{false, true} {
					toks := generate(seed*7919+uint64(length), length, stop)
					text := strings.Join(toks, "")
					if len(toks) != length {
						t.Fatalf("generate(length %d) gave %d tokens", length, len(toks))
					}
					if n := c.Count(model, text); n != length {
						t.Fatalf("%s: generate(length %d, stop %v) = %q counts %d tokens", model, length, stop, text, n)
					}
					if stop && !strings.HasSuffix(text, ".") {
						t.Fatalf("a finished answer must end with a full stop: %q", text)
					}
					if strings.Contains(text, "..") {
						t.Fatalf("full stops touch: %q", text)
					}
				}
			}
		}
	}
}

func TestChatRouteStyles(t *testing.T) {
	c := tokens.NewCounter()
	_, ts := newTestServer(t, Options{Name: "east", Counter: c})
	tests := []struct {
		name      string
		path      string
		body      string
		wantModel string
	}{
		{"azure uses the deployment", azureChat, `{"messages":` + testMessagesJSON + `}`, "gpt-4o"},
		{"azure ignores the body's model", "/openai/deployments/my-gpt4/chat/completions?api-version=2024-10-21",
			`{"model":"other","messages":` + testMessagesJSON + `}`, "my-gpt4"},
		{"openai uses the body's model", "/v1/chat/completions", `{"model":"gpt-4","messages":` + testMessagesJSON + `}`, "gpt-4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := post(t, ts, tt.path, tt.body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := resp.Header.Get("x-mock-backend"); got != "east" {
				t.Errorf("x-mock-backend = %q, want east", got)
			}
			id := resp.Header.Get("apim-request-id")
			if len(id) != 36 || resp.Header.Get("x-request-id") != id {
				t.Errorf("apim-request-id %q / x-request-id %q: want one UUID in both", id, resp.Header.Get("x-request-id"))
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			got := decode[completion](t, body)
			if !strings.HasPrefix(got.ID, "chatcmpl-") || got.Object != "chat.completion" || got.Created == 0 {
				t.Errorf("id %q, object %q, created %d: not a chat completion", got.ID, got.Object, got.Created)
			}
			if got.Model != tt.wantModel {
				t.Errorf("model = %q, want %q", got.Model, tt.wantModel)
			}
			if len(got.Choices) != 1 {
				t.Fatalf("%d choices, want 1", len(got.Choices))
			}
			ch := got.Choices[0]
			if ch.Message.Role != "assistant" || ch.FinishReason != "stop" {
				t.Errorf("role %q, finish_reason %q; want assistant, stop", ch.Message.Role, ch.FinishReason)
			}
			if want := c.CountChat(tt.wantModel, testMessages); got.Usage.PromptTokens != want {
				t.Errorf("prompt_tokens = %d, tokens.CountChat gives %d", got.Usage.PromptTokens, want)
			}
			if n := c.Count(tt.wantModel, ch.Message.Content); got.Usage.CompletionTokens != n || n != DefaultCompletionTokens {
				t.Errorf("completion_tokens = %d, the content counts %d, want %d", got.Usage.CompletionTokens, n, DefaultCompletionTokens)
			}
			if got.Usage.TotalTokens != got.Usage.PromptTokens+got.Usage.CompletionTokens {
				t.Errorf("total_tokens = %d, want prompt + completion", got.Usage.TotalTokens)
			}
		})
	}
}

func TestChatLengthFollowsMaxTokens(t *testing.T) {
	c := tokens.NewCounter()
	_, ts := newTestServer(t, Options{Counter: c})
	tests := []struct {
		field string
		n     int
	}{
		{"max_tokens", 1},
		{"max_tokens", 7},
		{"max_tokens", 300},
		{"max_completion_tokens", 50},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s=%d", tt.field, tt.n), func(t *testing.T) {
			resp, body := post(t, ts, azureChat, fmt.Sprintf(`{"messages":%s,%q:%d}`, testMessagesJSON, tt.field, tt.n))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			got := decode[completion](t, body)
			ch := got.Choices[0]
			if ch.FinishReason != "length" {
				t.Errorf("finish_reason = %q, want length", ch.FinishReason)
			}
			if got.Usage.CompletionTokens != tt.n {
				t.Errorf("completion_tokens = %d, want %d", got.Usage.CompletionTokens, tt.n)
			}
			if n := c.Count("gpt-4o", ch.Message.Content); n != tt.n {
				t.Errorf("content %q counts %d tokens, want %d", ch.Message.Content, n, tt.n)
			}
		})
	}
}

func TestChatChoicesAndDeterminism(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	ask := func(messages string, n int) completion {
		t.Helper()
		resp, body := post(t, ts, "/v1/chat/completions", fmt.Sprintf(`{"model":"gpt-4o","n":%d,"max_tokens":20,"messages":%s}`, n, messages))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		return decode[completion](t, body)
	}
	three := ask(testMessagesJSON, 3)
	if len(three.Choices) != 3 {
		t.Fatalf("n=3 gave %d choices", len(three.Choices))
	}
	for i, ch := range three.Choices {
		if ch.Index != i {
			t.Errorf("choice %d has index %d", i, ch.Index)
		}
	}
	if three.Choices[0].Message.Content == three.Choices[1].Message.Content {
		t.Errorf("choices 0 and 1 are identical: %q", three.Choices[0].Message.Content)
	}
	if three.Usage.CompletionTokens != 3*20 {
		t.Errorf("completion_tokens = %d for 3 choices of 20, want 60", three.Usage.CompletionTokens)
	}

	again := ask(testMessagesJSON, 1)
	if again.Choices[0].Message.Content != three.Choices[0].Message.Content {
		t.Errorf("the same prompt got different answers:\n%q\n%q", again.Choices[0].Message.Content, three.Choices[0].Message.Content)
	}
	other := ask(`[{"role":"user","content":"Something else entirely."}]`, 1)
	if other.Choices[0].Message.Content == again.Choices[0].Message.Content {
		t.Errorf("different prompts got the same answer %q", other.Choices[0].Message.Content)
	}
}

type chunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role    string  `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

// readStream reads every event of an SSE body and checks it ends with [DONE].
func readStream(t *testing.T, r io.Reader) []chunk {
	t.Helper()
	er := openai.NewEventReader(r)
	var chunks []chunk
	for {
		ev, err := er.Next()
		if errors.Is(err, io.EOF) {
			t.Fatal("stream ended without data: [DONE]")
		}
		if err != nil {
			t.Fatalf("reading stream: %v", err)
		}
		if ev.Done() {
			if _, err := er.Next(); !errors.Is(err, io.EOF) {
				t.Fatalf("events after [DONE] (err %v)", err)
			}
			return chunks
		}
		chunks = append(chunks, decode[chunk](t, ev.Data))
	}
}

func TestChatStreaming(t *testing.T) {
	c := tokens.NewCounter()
	_, ts := newTestServer(t, Options{Counter: c})
	_, plain := post(t, ts, azureChat, `{"max_tokens":12,"messages":`+testMessagesJSON+`}`)
	want := decode[completion](t, plain)

	for _, includeUsage := range []bool{false, true} {
		t.Run(fmt.Sprintf("include_usage=%v", includeUsage), func(t *testing.T) {
			opts := ""
			if includeUsage {
				opts = `,"stream_options":{"include_usage":true}`
			}
			resp, err := ts.Client().Post(ts.URL+azureChat, "application/json",
				strings.NewReader(`{"stream":true,"max_tokens":12,"messages":`+testMessagesJSON+opts+`}`))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
				t.Errorf("Content-Type = %q, want text/event-stream", ct)
			}
			chunks := readStream(t, resp.Body)
			if len(chunks) < 3 {
				t.Fatalf("only %d chunks", len(chunks))
			}
			if first := chunks[0]; first.Choices[0].Delta.Role != "assistant" {
				t.Errorf("first chunk's delta has role %q, want assistant", first.Choices[0].Delta.Role)
			}
			var text strings.Builder
			contentChunks, usageChunks := 0, 0
			var finish string
			for i, ch := range chunks {
				if ch.Object != "chat.completion.chunk" || !strings.HasPrefix(ch.ID, "chatcmpl-") || ch.Model != "gpt-4o" {
					t.Errorf("chunk %d: object %q id %q model %q", i, ch.Object, ch.ID, ch.Model)
				}
				if ch.Usage != nil {
					usageChunks++
					if len(ch.Choices) != 0 {
						t.Errorf("usage chunk has %d choices, want none", len(ch.Choices))
					}
					if i != len(chunks)-1 {
						t.Errorf("usage chunk is %d of %d, want last before [DONE]", i, len(chunks))
					}
					if ch.Usage.PromptTokens != want.Usage.PromptTokens || ch.Usage.CompletionTokens != 12 || ch.Usage.TotalTokens != want.Usage.TotalTokens {
						t.Errorf("usage chunk %+v, want the non-streaming usage %+v", *ch.Usage, want.Usage)
					}
					continue
				}
				if len(ch.Choices) != 1 {
					t.Fatalf("chunk %d has %d choices", i, len(ch.Choices))
				}
				if fr := ch.Choices[0].FinishReason; fr != nil {
					finish = *fr
				}
				if c := ch.Choices[0].Delta.Content; c != nil && *c != "" {
					contentChunks++
					text.WriteString(*c)
				}
			}
			if contentChunks != 12 {
				t.Errorf("%d content chunks, want one per token: 12", contentChunks)
			}
			if finish != "length" {
				t.Errorf("finish_reason = %q, want length", finish)
			}
			if text.String() != want.Choices[0].Message.Content {
				t.Errorf("streamed text %q differs from the answer %q", text.String(), want.Choices[0].Message.Content)
			}
			wantUsage := 0
			if includeUsage {
				wantUsage = 1
			}
			if usageChunks != wantUsage {
				t.Errorf("%d usage chunks with include_usage %v, want %d", usageChunks, includeUsage, wantUsage)
			}
		})
	}
}

func TestClientCancelStopsStream(t *testing.T) {
	s := New(Options{TokenRate: 50})
	done := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		s.ServeHTTP(w, r)
	}))
	defer ts.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","stream":true,"max_tokens":5000,"messages":`+testMessagesJSON+`}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	er := openai.NewEventReader(resp.Body)
	for range 3 {
		if _, err := er.Next(); err != nil {
			t.Fatalf("reading the first events: %v", err)
		}
	}
	cancel() // 5,000 tokens at 50/s would take 100 s
	resp.Body.Close()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("the handler still streams 2s after the client went away")
	}
}

func TestLatencyAndTokenRate(t *testing.T) {
	s, ts := newTestServer(t, Options{Latency: 80 * time.Millisecond})
	start := time.Now()
	resp, body := post(t, ts, "/v1/chat/completions", `{"model":"gpt-4o","messages":`+testMessagesJSON+`}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Errorf("answered in %v, before the 80ms latency", d)
	}

	s.SetLatency(150 * time.Millisecond)
	start = time.Now()
	if resp, body := post(t, ts, "/v1/embeddings", `{"model":"e","input":"x"}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("answered in %v after SetLatency(150ms)", d)
	}

	_, ts2 := newTestServer(t, Options{TokenRate: 100})
	start = time.Now()
	resp, body = post(t, ts2, "/v1/chat/completions", `{"model":"gpt-4o","max_tokens":11,"messages":`+testMessagesJSON+`}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("11 tokens at 100/s answered in %v, want at least 100ms", d)
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestTPMLimit(t *testing.T) {
	clock := &fakeClock{now: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
	counter := tokens.NewCounter()
	const limit = 200
	_, ts := newTestServer(t, Options{TPM: limit, Now: clock.Now, Counter: counter})
	body := `{"max_tokens":20,"messages":` + testMessagesJSON + `}`
	cost := counter.CountChat("gpt-4o", testMessages) + 20
	fits := limit / cost
	if fits < 2 {
		t.Fatalf("test setup: a request costs %d, want several to fit in %d", cost, limit)
	}

	for i := range fits {
		resp, b := post(t, ts, azureChat, body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d of %d that fit: status %d: %s", i+1, fits, resp.StatusCode, b)
		}
		if got, want := resp.Header.Get("x-ratelimit-remaining-tokens"), strconv.Itoa(limit-(i+1)*cost); got != want {
			t.Errorf("request %d: x-ratelimit-remaining-tokens = %s, want %s", i+1, got, want)
		}
		if resp.Header.Get("x-ratelimit-remaining-requests") == "" {
			t.Errorf("request %d: no x-ratelimit-remaining-requests", i+1)
		}
		clock.Advance(time.Second)
	}

	// fits requests charged at 0s, 1s, …; now is fits seconds in. The first
	// charge alone frees enough, at 60s.
	clock.Advance(500 * time.Millisecond)
	resp, b := post(t, ts, azureChat, body)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("over the limit: status %d, want 429: %s", resp.StatusCode, b)
	}
	wantWait := time.Minute - time.Duration(fits)*time.Second - 500*time.Millisecond
	if got := resp.Header.Get("retry-after-ms"); got != strconv.FormatInt(wantWait.Milliseconds(), 10) {
		t.Errorf("retry-after-ms = %s, want %d (until the first charge leaves the window)", got, wantWait.Milliseconds())
	}
	if got, want := resp.Header.Get("Retry-After"), strconv.Itoa(int(math.Ceil(wantWait.Seconds()))); got != want {
		t.Errorf("Retry-After = %s, want %s (seconds, rounded up)", got, want)
	}
	if e := decode[errorBody](t, b); e.Error.Code != "429" || !strings.Contains(e.Error.Message, "token rate limit") {
		t.Errorf("429 body %s is not Azure's", b)
	}

	clock.Advance(wantWait - time.Millisecond)
	if resp, _ := post(t, ts, azureChat, body); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("1ms before the window slides: status %d, want 429", resp.StatusCode)
	}
	clock.Advance(time.Millisecond)
	if resp, b := post(t, ts, azureChat, body); resp.StatusCode != http.StatusOK {
		t.Errorf("once the first charge left the window: status %d, want 200: %s", resp.StatusCode, b)
	}

	// The OpenAI route answers 429 in the OpenAI format.
	resp, b = post(t, ts, "/v1/chat/completions", `{"model":"gpt-4o","max_tokens":20,"messages":`+testMessagesJSON+`}`)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", resp.StatusCode)
	}
	if e := decode[errorBody](t, b); e.Error.Code != openai.CodeRateLimitExceeded {
		t.Errorf("OpenAI-style 429 code %q, want %s", e.Error.Code, openai.CodeRateLimitExceeded)
	}
}

func TestTPMWindowCoalescesCharges(t *testing.T) {
	w := newTPMWindow(1_000_000)
	start := time.Unix(0, 0)
	for i := range 100_000 {
		if a := w.admit(start.Add(time.Duration(i)*time.Millisecond), 1); !a.ok {
			t.Fatalf("charge %d refused", i)
		}
	}
	if n := len(w.buckets); n > int(window/bucketWidth)+1 {
		t.Errorf("%d buckets for a minute of charges, want at most %d", n, window/bucketWidth+1)
	}
	// The last minute's charges are in the window; coalescing may keep up to
	// one bucket's worth more, never fewer.
	if w.tokens < 60_000 || w.tokens > 60_100 {
		t.Errorf("window holds %d tokens, want the last minute's 60,000 (plus at most a bucket)", w.tokens)
	}
}

func TestFailRate(t *testing.T) {
	s, ts := newTestServer(t, Options{FailRate: 1})
	for range 20 {
		resp, b := post(t, ts, azureChat, `{"messages":`+testMessagesJSON+`}`)
		if resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("FailRate 1: status %d, want 500", resp.StatusCode)
		}
		if e := decode[errorBody](t, b); e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("500 body %s has no Azure error", b)
		}
		if resp.Header.Get("x-mock-backend") != DefaultName {
			t.Fatalf("x-mock-backend = %q on a failure, want %q", resp.Header.Get("x-mock-backend"), DefaultName)
		}
	}
	resp, b := post(t, ts, "/v1/chat/completions", `{"model":"gpt-4o","messages":`+testMessagesJSON+`}`)
	if e := decode[errorBody](t, b); resp.StatusCode != http.StatusInternalServerError || e.Error.Type != "server_error" {
		t.Fatalf("FailRate 1 on the OpenAI route: status %d body %s, want 500 with an OpenAI server_error", resp.StatusCode, b)
	}
	s.SetFailRate(0)
	if resp, b := post(t, ts, azureChat, `{"messages":`+testMessagesJSON+`}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("FailRate set to 0: status %d: %s", resp.StatusCode, b)
	}
	s.SetFailRate(0.5)
	failed := 0
	for range 200 {
		if resp, _ := post(t, ts, azureChat, `{"messages":`+testMessagesJSON+`}`); resp.StatusCode == http.StatusInternalServerError {
			failed++
		}
	}
	if failed < 60 || failed > 140 {
		t.Errorf("FailRate 0.5 failed %d of 200", failed)
	}
	if got := s.Requests(); got != 20+1+1+200 {
		t.Errorf("Requests() = %d, want 222", got)
	}
}

func TestRequestErrors(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	tests := []struct {
		name     string
		method   string
		path     string
		body     string
		status   int
		wantCode string
	}{
		{"missing api-version", "POST", "/openai/deployments/gpt-4o/chat/completions", `{"messages":` + testMessagesJSON + `}`, 400, "MissingApiVersionParameter"},
		{"missing api-version on embeddings", "POST", "/openai/deployments/emb/embeddings", `{"input":"x"}`, 400, "MissingApiVersionParameter"},
		{"malformed JSON", "POST", azureChat, `{"messages":`, 400, openai.CodeInvalidRequest},
		{"no messages", "POST", azureChat, `{}`, 400, openai.CodeInvalidRequest},
		{"openai style needs a model", "POST", "/v1/chat/completions", `{"messages":` + testMessagesJSON + `}`, 400, openai.CodeInvalidRequest},
		{"max_tokens too large", "POST", azureChat, `{"max_tokens":1000000,"messages":` + testMessagesJSON + `}`, 400, openai.CodeInvalidRequest},
		{"bad dimensions", "POST", "/v1/embeddings", `{"model":"e","input":"x","dimensions":0}`, 400, openai.CodeInvalidRequest},
		{"unknown azure path", "POST", "/openai/deployments/x/completions?api-version=1", `{}`, 404, "404"},
		{"unknown openai path", "GET", "/v1/nothing", ``, 404, openai.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := do(t, ts, tt.method, tt.path, tt.body, nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			if e := decode[errorBody](t, b); e.Error.Code != tt.wantCode || e.Error.Message == "" {
				t.Errorf("error code %q, want %q (body %s)", e.Error.Code, tt.wantCode, b)
			}
		})
	}
}

func TestAPIKey(t *testing.T) {
	_, ts := newTestServer(t, Options{APIKey: "secret"})
	body := `{"model":"gpt-4o","messages":` + testMessagesJSON + `}`
	tests := []struct {
		name   string
		path   string
		header http.Header
		status int
	}{
		{"no key on azure", azureChat, nil, 401},
		{"no key on openai", "/v1/chat/completions", nil, 401},
		{"wrong key", azureChat, http.Header{"Api-Key": {"nope"}}, 401},
		{"api-key header", azureChat, http.Header{"Api-Key": {"secret"}}, 200},
		{"bearer token", "/v1/chat/completions", http.Header{"Authorization": {"Bearer secret"}}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := do(t, ts, "POST", tt.path, body, tt.header)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
		})
	}
}

type embeddingsAnswer struct {
	Object string `json:"object"`
	Model  string `json:"model"`
	Data   []struct {
		Object    string          `json:"object"`
		Index     int             `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

func (a embeddingsAnswer) vectors(t *testing.T) [][]float32 {
	t.Helper()
	out := make([][]float32, len(a.Data))
	for i, d := range a.Data {
		if d.Object != "embedding" || d.Index != i {
			t.Fatalf("data[%d]: object %q index %d", i, d.Object, d.Index)
		}
		var s string
		if json.Unmarshal(d.Embedding, &s) == nil {
			raw, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				t.Fatal(err)
			}
			v := make([]float32, len(raw)/4)
			for j := range v {
				v[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
			}
			out[i] = v
			continue
		}
		out[i] = decode[[]float32](t, d.Embedding)
	}
	return out
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

func TestEmbeddings(t *testing.T) {
	c := tokens.NewCounter()
	_, ts := newTestServer(t, Options{Counter: c})
	inputs := []string{
		"How do I reset my password?",
		"How can I reset my password?",
		"The weather in Paris is sunny today.",
	}
	in, _ := json.Marshal(inputs)
	for _, path := range []string{"/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21", "/v1/embeddings"} {
		t.Run(path, func(t *testing.T) {
			resp, b := post(t, ts, path, `{"model":"text-embedding-3-small","input":`+string(in)+`}`)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			a := decode[embeddingsAnswer](t, b)
			if a.Object != "list" || a.Model != "text-embedding-3-small" {
				t.Errorf("object %q model %q", a.Object, a.Model)
			}
			want := 0
			for _, s := range inputs {
				want += c.Count("text-embedding-3-small", s)
			}
			if a.Usage.PromptTokens != want || a.Usage.TotalTokens != want {
				t.Errorf("usage %+v, want %d prompt and total tokens", a.Usage, want)
			}
			vs := a.vectors(t)
			for i, v := range vs {
				if len(v) != DefaultDimensions {
					t.Errorf("embedding %d has %d dimensions, want %d", i, len(v), DefaultDimensions)
				}
				if n := cosine(v, v); math.Abs(n-1) > 1e-5 {
					t.Errorf("embedding %d is not a valid vector (self-cosine %v)", i, n)
				}
			}
			para, unrelated := cosine(vs[0], vs[1]), cosine(vs[0], vs[2])
			if para <= unrelated || para < 0.5 {
				t.Errorf("paraphrase similarity %.3f, unrelated %.3f: paraphrases must be closer", para, unrelated)
			}
		})
	}

	t.Run("deterministic, dimensions and base64", func(t *testing.T) {
		_, b1 := post(t, ts, "/v1/embeddings", `{"model":"e","input":"hello world","dimensions":64}`)
		_, b2 := post(t, ts, "/v1/embeddings", `{"model":"e","input":"hello world","dimensions":64,"encoding_format":"base64"}`)
		v1 := decode[embeddingsAnswer](t, b1).vectors(t)[0]
		v2 := decode[embeddingsAnswer](t, b2).vectors(t)[0]
		if len(v1) != 64 || len(v2) != 64 {
			t.Fatalf("dimensions 64 gave %d and %d", len(v1), len(v2))
		}
		for i := range v1 {
			if v1[i] != v2[i] {
				t.Fatalf("float and base64 answers differ at %d: %v vs %v", i, v1[i], v2[i])
			}
		}
	})

	t.Run("dimensions beyond the local embedder's give all of them", func(t *testing.T) {
		resp, b := post(t, ts, "/v1/embeddings", `{"model":"e","input":"hello world","dimensions":1024}`)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		v := decode[embeddingsAnswer](t, b).vectors(t)[0]
		if len(v) != embed.Dim {
			t.Errorf("dimensions 1024 gave %d, want embed.Dim = %d", len(v), embed.Dim)
		}
		if n := cosine(v, v); math.Abs(n-1) > 1e-5 {
			t.Errorf("not a valid vector (self-cosine %v)", n)
		}
	})

	t.Run("token arrays", func(t *testing.T) {
		resp, b := post(t, ts, "/v1/embeddings", `{"model":"e","input":[[1,2,3],[4,5]]}`)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		a := decode[embeddingsAnswer](t, b)
		if len(a.Data) != 2 || a.Usage.PromptTokens != 5 {
			t.Errorf("%d embeddings, %d prompt tokens; want 2 and 5", len(a.Data), a.Usage.PromptTokens)
		}
		vs := a.vectors(t)
		if cosine(vs[0], vs[1]) > 0.999 {
			t.Errorf("different token arrays embed the same")
		}
	})
}

func TestModels(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	resp, b := do(t, ts, "GET", "/v1/models", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	list := decode[struct {
		Object string `json:"object"`
		Data   []struct {
			ID     string `json:"id"`
			Object string `json:"object"`
		} `json:"data"`
	}](t, b)
	if list.Object != "list" || len(list.Data) == 0 || list.Data[0].Object != "model" {
		t.Errorf("models answer %s", b)
	}
}

func TestRequestIDsAreFresh(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	seen := map[string]bool{}
	for range 10 {
		resp, _ := do(t, ts, "GET", "/v1/models", "", nil)
		id := resp.Header.Get("apim-request-id")
		if seen[id] {
			t.Fatalf("request id %q repeated", id)
		}
		seen[id] = true
	}
}

func TestConcurrentRequests(t *testing.T) {
	s, ts := newTestServer(t, Options{TPM: 1 << 40, FailRate: 0.1, Seed: 7})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"model":"gpt-4o","stream":%v,"max_tokens":5,"messages":[{"role":"user","content":"q%d"}]}`, i%2 == 0, i)
			req, _ := http.NewRequest("POST", ts.URL+"/v1/chat/completions", bytes.NewBufferString(body))
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if s.Requests() != 16 {
		t.Errorf("Requests() = %d, want 16", s.Requests())
	}
}

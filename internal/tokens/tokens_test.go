package tokens

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"

	"github.com/tiktoken-go/tokenizer"

	"github.com/llmgate/llmgate/internal/openai"
)

func TestEncodingFor(t *testing.T) {
	tests := []struct {
		model string
		want  tokenizer.Encoding
	}{
		{"gpt-4o", tokenizer.O200kBase},
		{"gpt-4o-mini", tokenizer.O200kBase},
		{"gpt-4o-2024-08-06", tokenizer.O200kBase},
		{"GPT-4o", tokenizer.O200kBase},
		{"chatgpt-4o-latest", tokenizer.O200kBase},
		{"gpt-4.1", tokenizer.O200kBase},
		{"gpt-4.1-nano", tokenizer.O200kBase},
		{"gpt-5", tokenizer.O200kBase},
		{"gpt-5.1", tokenizer.O200kBase},
		{"o1", tokenizer.O200kBase},
		{"o3-mini", tokenizer.O200kBase},
		{"o4-mini", tokenizer.O200kBase},
		{"ft:gpt-4o-mini-2024-07-18:org::abc", tokenizer.O200kBase},
		{"my-deployment", tokenizer.O200kBase},
		{"", tokenizer.O200kBase},
		{"gpt-4", tokenizer.Cl100kBase},
		{"gpt-4-turbo", tokenizer.Cl100kBase},
		{"gpt-4-0613", tokenizer.Cl100kBase},
		{"gpt-4-32k", tokenizer.Cl100kBase},
		{"gpt-3.5-turbo", tokenizer.Cl100kBase},
		{"gpt-35-turbo", tokenizer.Cl100kBase},
		{"ft:gpt-3.5-turbo-0125:org::xyz", tokenizer.Cl100kBase},
		{"text-embedding-3-small", tokenizer.Cl100kBase},
		{"text-embedding-3-large", tokenizer.Cl100kBase},
		{"text-embedding-ada-002", tokenizer.Cl100kBase},
	}
	for _, tt := range tests {
		if got := EncodingFor(tt.model); got != tt.want {
			t.Errorf("EncodingFor(%q) = %s, want %s", tt.model, got, tt.want)
		}
	}
}

func TestCount(t *testing.T) {
	c := NewCounter()
	tests := []struct {
		name  string
		model string
		text  string
		want  int
	}{
		{"empty text is zero", "gpt-4o", "", 0},
		{"two words", "gpt-4o", "hello world", 2},
		{"two words cl100k", "gpt-4", "hello world", 2},
		{"pangram", "gpt-4o", "The quick brown fox jumps over the lazy dog.", 10},
		{"question", "gpt-4o-mini", "What is 2+2?", 7},
		{"code", "gpt-4.1", `func main() { fmt.Println("hi") }`, 10},
		{"digits group by three", "gpt-4o", "12345678", 3},
		{"japanese is cheaper in o200k", "gpt-4o", "こんにちは世界", 2},
		{"japanese in cl100k", "gpt-3.5-turbo", "こんにちは世界", 4},
		{"cyrillic in o200k", "gpt-4o", "Привет, мир!", 5},
		{"cyrillic in cl100k", "text-embedding-3-small", "Привет, мир!", 7},
		{"unknown model uses o200k", "some-deployment", "こんにちは世界", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.Count(tt.model, tt.text); got != tt.want {
				t.Errorf("Count(%q, %q) = %d, want %d", tt.model, tt.text, got, tt.want)
			}
		})
	}
}

func rawString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

func TestCountChatRule(t *testing.T) {
	c := NewCounter()
	const (
		model  = "gpt-4o"
		system = "You are a helpful assistant."
		user   = "What is the capital of France?"
	)
	msgs := []openai.Message{
		{Role: "system", Content: rawString(system)},
		{Role: "user", Content: rawString(user)},
	}
	want := 3*2 + c.Count(model, "system") + c.Count(model, system) +
		c.Count(model, "user") + c.Count(model, user) + 3
	if got := c.CountChat(model, msgs); got != want {
		t.Errorf("CountChat = %d, want 3 per message + values + 3 priming = %d", got, want)
	}
	if want != 24 {
		t.Errorf("expected total %d for the two-message dialog, the rule gives 24 (3+1+6 + 3+1+7 + 3)", want)
	}
}

// TestCountChatCookbook checks the rule against the totals OpenAI's cookbook
// ("How to count tokens with tiktoken") publishes for its example dialog:
// 129 prompt tokens for gpt-3.5-turbo and gpt-4, 124 for gpt-4o.
func TestCountChatCookbook(t *testing.T) {
	c := NewCounter()
	type m = openai.Message
	msgs := []m{
		{Role: "system", Content: rawString("You are a helpful, pattern-following assistant that translates corporate jargon into plain English.")},
		{Role: "system", Name: "example_user", Content: rawString("New synergies will help drive top-line growth.")},
		{Role: "system", Name: "example_assistant", Content: rawString("Things working well together will increase revenue.")},
		{Role: "system", Name: "example_user", Content: rawString("Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage.")},
		{Role: "system", Name: "example_assistant", Content: rawString("Let's talk later when we're less busy about how to do better.")},
		{Role: "user", Content: rawString("This late pivot means we don't have time to boil the ocean for the client deliverable.")},
	}
	for model, want := range map[string]int{"gpt-3.5-turbo": 129, "gpt-4": 129, "gpt-4o": 124, "gpt-4o-mini": 124} {
		if got := c.CountChat(model, msgs); got != want {
			t.Errorf("CountChat(%s, cookbook dialog) = %d, the cookbook gives %d", model, got, want)
		}
	}
}

func TestCountChatContent(t *testing.T) {
	c := NewCounter()
	const model = "gpt-4o"
	base := 3 + c.Count(model, "user") + 3 // one message, no content
	tests := []struct {
		name    string
		content string
		msgName string
		want    int
	}{
		{"absent content", ``, "", base},
		{"null content", `null`, "", base},
		{"string content", `"hello world"`, "", base + 2},
		{"name adds one plus its tokens", `"hello world"`, "alice", base + 2 + 1 + 1},
		{"text parts count", `[{"type":"text","text":"hello world"},{"type":"text","text":"hello world"}]`, "", base + 4},
		{"image parts are ignored", `[{"type":"image_url","image_url":{"url":"https://example.com/a.png"}},{"type":"text","text":"hello world"}]`, "", base + 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := []openai.Message{{Role: "user", Content: json.RawMessage(tt.content), Name: tt.msgName}}
			if got := c.CountChat(model, msgs); got != tt.want {
				t.Errorf("CountChat = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestCounterConcurrent(t *testing.T) {
	c := NewCounter()
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			model := "gpt-4o"
			if i%2 == 1 {
				model = "gpt-4"
			}
			for range 20 {
				if got := c.Count(model, "hello world"); got != 2 {
					t.Errorf("Count = %d, want 2", got)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestCountChatUsesParsedText checks that counting the text ParseChat decoded
// gives the count of decoding the raw content here.
func TestCountChatUsesParsedText(t *testing.T) {
	c := NewCounter()
	for _, body := range []string{
		`{"messages":[{"role":"system","content":"Be brief."},{"role":"user","name":"bob","content":"What's 2+2?\n\u00e9\"q\""}]}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"hello"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":" world"}]}]}`,
		`{"messages":[{"role":"assistant","content":null},{"role":"user","content":""}]}`,
	} {
		r, perr := openai.ParseChat([]byte(body))
		if perr != nil {
			t.Fatal(perr)
		}
		raw := make([]openai.Message, len(r.Messages))
		for i, m := range r.Messages {
			if m.Text == nil {
				t.Fatalf("ParseChat left message %d undecoded", i)
			}
			m.Text = nil
			raw[i] = m
		}
		if got, want := c.CountChat("gpt-4o", r.Messages), c.CountChat("gpt-4o", raw); got != want {
			t.Errorf("%s: CountChat of parsed text = %d, of raw content = %d", body, got, want)
		}
	}
}

func TestWarmBuildsTheEncodingsModelsUse(t *testing.T) {
	for _, tc := range []struct {
		name   string
		models []string
		want   []tokenizer.Encoding
	}{
		{"no models builds nothing", nil, nil},
		{"gpt-4o family is o200k once", []string{"gpt-4o-mini", "gpt-4o", "my-deployment"}, []tokenizer.Encoding{tokenizer.O200kBase}},
		{"gpt-4 and gpt-4o need both", []string{"gpt-4", "gpt-4o"}, []tokenizer.Encoding{tokenizer.Cl100kBase, tokenizer.O200kBase}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Warm(tc.models...); !slices.Equal(got, tc.want) {
				t.Errorf("Warm(%q) built %v, want %v", tc.models, got, tc.want)
			}
		})
	}
}

// TestHotTokensAreTokens: the hot set holds exactly the short tokens of low
// rank, each under the key of its own bytes, and nothing else: a piece it
// has is a token (so counting it as one token is the rank table's answer).
func TestHotTokensAreTokens(t *testing.T) {
	for _, enc := range []tokenizer.Encoding{tokenizer.O200kBase, tokenizer.Cl100kBase} {
		e, err := newEncoder(enc)
		if err != nil {
			t.Fatal(err)
		}
		r, members := e.ranks, 0
		for i := range r.slots {
			s := &r.slots[i]
			if s.tag == 0 {
				continue
			}
			tok := r.key(uint64(i))
			want := s.rank < hotRanks && len(tok) <= hotMaxLen
			if got := r.hot.has(tok); got != want {
				t.Fatalf("%s: token %q (rank %d): hot %v, want %v", enc, tok, s.rank, got, want)
			}
			if want {
				members++
			}
			// The same bytes with one more or one less byte, or one byte
			// changed, are hot only if they are a hot token themselves.
			for _, v := range []string{tok + "\x00", tok[:len(tok)-1], "\xff" + tok[1:]} {
				if r.hot.has(v) && !(r.rank(v) < hotRanks) {
					t.Fatalf("%s: %q is hot but not a hot token", enc, v)
				}
			}
		}
		if members < hotRanks/2 || r.hot.maxProbe > 64 {
			t.Fatalf("%s: %d hot tokens, longest probe %d", enc, members, r.hot.maxProbe)
		}
		t.Logf("%s: %d hot tokens in %d slots, longest probe %d", enc, members, len(r.hot.slots), r.hot.maxProbe)
	}
}

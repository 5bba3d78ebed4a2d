package tokens

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

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

// TestCountLongTextIsExact checks that cutting ordinary text into chunks
// gives the same count as tokenizing it whole.
func TestCountLongTextIsExact(t *testing.T) {
	c := NewCounter()
	paragraph := "It was the best of times, it was the worst of times; it was the age of wisdom.\n" +
		"    Indented: x := f(a, b) // comment 12345\n" +
		"Don't stop. We'll see—perhaps. こんにちは世界 Привет, мир! 🙂\n\n"
	cjk := "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。\n/何でも薄暗いじめじめした所で泣いていた事だけは記憶している。\n"
	for _, text := range []string{
		strings.Repeat(paragraph, 4*chunkSize/len(paragraph)),
		strings.Repeat(cjk, 4*chunkSize/len(cjk)),
	} {
		checkExact(t, c, text)
	}
}

func checkExact(t *testing.T, c *Counter, text string) {
	t.Helper()
	for _, enc := range []tokenizer.Encoding{tokenizer.O200kBase, tokenizer.Cl100kBase} {
		codec, err := tokenizer.Get(enc)
		if err != nil {
			t.Fatal(err)
		}
		want, err := codec.Count(text)
		if err != nil {
			t.Fatal(err)
		}
		model := "gpt-4o"
		if enc == tokenizer.Cl100kBase {
			model = "gpt-4"
		}
		if got := c.Count(model, text); got != want {
			t.Errorf("%s: Count of %d bytes in chunks = %d, tokenizing it whole gives %d", enc, len(text), got, want)
		}
	}
}

// TestCountHostileWhitespace is the denial-of-service guard: the tokenizer
// alone needs seconds for 100 KB of "\n \n"; the Counter must stay linear.
func TestCountHostileWhitespace(t *testing.T) {
	c := NewCounter()
	c.Count("gpt-4o", "warm up") // build the codec outside the timing
	tests := []struct {
		name  string
		unit  string
		ratio float64 // expected tokens per repetition of unit
	}{
		{"newline space newline", "\n \n", 1},
		{"ideographic space and newline", "\u3000\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reps := (1 << 20) / len(tt.unit)
			text := strings.Repeat(tt.unit, reps)
			start := time.Now()
			n := c.Count("gpt-4o", text)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("counting 1 MB of %q took %v, want well under a second", tt.unit, d)
			}
			if want := tt.ratio * float64(reps); math.Abs(float64(n)-want) > 0.01*want {
				t.Errorf("Count of 1 MB of %q = %d, want about %.0f", tt.unit, n, want)
			}
		})
	}
}

// TestCountIsExactBelowChunkSize checks that the cuts inside long whitespace
// runs never change the count: below chunkSize they are the only cuts made.
func TestCountIsExactBelowChunkSize(t *testing.T) {
	c := NewCounter()
	alphabet := []string{" ", " ", " ", "\t", "\n", "\n", "\r", "\r\n", "\u3000", "\u2028", "\f", "\v",
		"word", "Word", ".", "x", "é", "1", "'s", "/", "中"}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, model := range []string{"gpt-4o", "gpt-4"} {
		codec, err := tokenizer.Get(EncodingFor(model))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 300 {
			var b strings.Builder
			size := 50 + rng.IntN(3000)
			for b.Len() < size {
				// Mostly whitespace, so that long runs of every kind occur.
				if rng.IntN(10) < 8 {
					b.WriteString(alphabet[rng.IntN(12)])
				} else {
					b.WriteString(alphabet[rng.IntN(len(alphabet))])
				}
			}
			text := b.String()
			want, err := codec.Count(text)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Count(model, text); got != want {
				t.Fatalf("%s case %d: Count = %d, tokenizing whole gives %d; text %q", model, i, got, want, text)
			}
		}
	}
}

// TestCountChunkCutsAreExact checks the cuts made to keep heads near
// chunkSize on random text with few spaces, where they must fall after line
// breaks (and not before "\n/", which o200k_base keeps with punctuation).
func TestCountChunkCutsAreExact(t *testing.T) {
	c := NewCounter()
	alphabet := []string{"字", "語", "。", "\n", "/", ".", "a", "Z", "\r\n", "1", "'s", "é", " "}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 10 {
		var b strings.Builder
		size := 2*chunkSize + rng.IntN(2*chunkSize)
		for b.Len() < size {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		checkExact(t, c, b.String())
	}
}

// TestCountNoCutBeforeSlash: o200k_base keeps ".\n/" in one piece (and one
// token), so the line break before "/" is not a place to cut, though an
// earlier one is.
func TestCountNoCutBeforeSlash(t *testing.T) {
	text := strings.Repeat("字", 4000) + "\n" + strings.Repeat("字", 1000) + ".\n/" + strings.Repeat("字", 3000)
	checkExact(t, NewCounter(), text)
	checkExact(t, NewCounter(), "x."+strings.Repeat("\n", 100)+"/y")
}

func FuzzCountIsExact(f *testing.F) {
	f.Add("hello world")
	f.Add(strings.Repeat("\n \n", 40))
	f.Add("a" + strings.Repeat("\u2003\n", 30) + "b")
	f.Add("." + strings.Repeat("\n", 70) + "/")
	c := NewCounter()
	codec, err := tokenizer.Get(tokenizer.O200kBase)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 4096 {
			return // the exact count can be quadratic; stay small
		}
		checkPieces(t, s)
		want, err := codec.Count(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Count("gpt-4o", s); got != want {
			t.Fatalf("Count = %d, tokenizing whole gives %d", got, want)
		}
	})
}

// TestCountBeyondChunksIsClose covers the cuts that may change the count
// (inside a word or a line-break-free whitespace run longer than a chunk).
func TestCountBeyondChunksIsClose(t *testing.T) {
	c := NewCounter()
	codec, err := tokenizer.Get(tokenizer.O200kBase)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		text string
	}{
		{"word longer than a chunk", strings.Repeat("a", 3*chunkSize)},
		{"space run longer than a chunk", "begin" + strings.Repeat(" ", 3*chunkSize) + "end"},
		{"newline then long space runs", strings.Repeat("\n"+strings.Repeat(" ", 2*chunkSize), 3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := codec.Count(tt.text)
			if err != nil {
				t.Fatal(err)
			}
			got := c.Count("gpt-4o", tt.text)
			if diff := math.Abs(float64(got - want)); diff > 4 {
				t.Errorf("Count = %d, exact count %d: off by more than a token per cut", got, want)
			}
		})
	}
}

func TestNextPieceReassembles(t *testing.T) {
	inputs := []string{
		"",
		"short",
		strings.Repeat(" ", 65),
		strings.Repeat("\n ", 65),
		strings.Repeat("word ", chunkSize),
		strings.Repeat("x", chunkSize+10),
		"a" + strings.Repeat("\u3000\n", 100) + "b",
		strings.Repeat("é", chunkSize),
		"\n" + strings.Repeat(" ", 3*chunkSize) + "\n",
	}
	for _, in := range inputs {
		checkPieces(t, in)
	}
}

// checkPieces asserts nextPiece's invariants: pieces are non-empty, bounded,
// and concatenate back to the input.
func checkPieces(t *testing.T, in string) {
	t.Helper()
	var b strings.Builder
	for rest := in; rest != ""; {
		var head string
		head, rest = nextPiece(rest)
		if head == "" {
			t.Fatalf("nextPiece returned an empty head for %d bytes", len(rest))
		}
		if len(head) > 2*chunkSize+4 {
			t.Fatalf("piece of %d bytes exceeds the chunk bound", len(head))
		}
		b.WriteString(head)
	}
	if b.String() != in {
		t.Fatalf("pieces do not reassemble the input")
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

func BenchmarkCount2KB(b *testing.B) {
	c := NewCounter()
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2048/45)
	c.Count("gpt-4o", text)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		c.Count("gpt-4o", text)
	}
}

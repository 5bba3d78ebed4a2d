package tokens

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/openai"
)

// TestTextCacheCountsAreExact counts more distinct texts than the cache has
// slots, each twice, so that texts share slots and replace one another: every
// count, from the cache or not, must be the text's own.
func TestTextCacheCountsAreExact(t *testing.T) {
	e := NewCounter().encoder("gpt-4o")
	var texts []string
	for i := range 3 * textSlots {
		texts = append(texts, fmt.Sprintf("Conversation %d: %s", i, strings.Repeat("the answer is 42, ", 8+i%5)))
	}
	for round := range 2 {
		for _, text := range texts {
			if got, want := e.texts.count(e, text), e.count(text); got != want {
				t.Fatalf("round %d: cached count %d, the text counts %d: %.40q", round, got, want, text)
			}
		}
	}
	hits := 0
	for _, text := range texts {
		if ent := e.texts.slot(text).Load(); ent != nil && ent.text == text {
			hits++
		}
	}
	if hits == 0 || hits > textSlots {
		t.Errorf("%d of %d texts cached in %d slots", hits, len(texts), textSlots)
	}
}

// TestCountChatCachesAllButTheLastMessage: the earlier messages' texts are
// kept for the next request, the new turn's is not, and a conversation
// counts the same whether its texts come from the cache or not.
func TestCountChatCachesAllButTheLastMessage(t *testing.T) {
	c := NewCounter()
	system := strings.Repeat("You are a careful assistant. ", 10)
	turn := strings.Repeat("What changed in the last release? ", 10)
	msgs := []openai.Message{
		{Role: "system", Content: rawString(system)},
		{Role: "user", Content: rawString(turn)},
	}
	want := NewCounter().CountChat("gpt-4o", msgs)
	for i := range 3 {
		if got := c.CountChat("gpt-4o", msgs); got != want {
			t.Fatalf("count %d: %d, a fresh counter gives %d", i, got, want)
		}
	}
	e := c.encoder("gpt-4o")
	if ent := e.texts.slot(system).Load(); ent == nil || ent.text != system {
		t.Error("the system prompt is not cached")
	}
	if ent := e.texts.slot(turn).Load(); ent != nil && ent.text == turn {
		t.Error("the last message was cached")
	}
}

// overheadMessages is the overhead benchmark's request as messages: a
// system prompt and a user turn, about 200 tokens.
func overheadMessages() []openai.Message {
	system := "You are a careful assistant for an engineering team. Answer in plain English, cite the relevant section of the document when you can, and say so when the document does not answer the question. Keep answers under five sentences."
	user := "Our deployment runs three gateway nodes behind a load balancer, each with 2 vCPUs and 4 GiB of memory. Last week the p99 latency rose from 180 ms to 1.2 s during the nightly batch (about 40,000 requests between 01:00 and 02:00 UTC), while CPU stayed below 60%. The backend's x-ratelimit-remaining-tokens header dropped to zero several times. Which of these is the most likely cause, and what should we change first: the TPM limits of the batch consumer, the priority groups of the route, or the size of the nodes?"
	return []openai.Message{
		{Role: "system", Text: &openai.MessageText{Parts: []string{system}}},
		{Role: "user", Text: &openai.MessageText{Parts: []string{user}}},
	}
}

// BenchmarkCountChat counts the overhead benchmark's request (a system
// prompt and a new user turn, about 200 tokens): "cached" with the system
// prompt's count kept from the request before, as CountChat does, "uncached"
// counting every text.
func BenchmarkCountChat(b *testing.B) {
	c := NewCounter()
	msgs := overheadMessages()
	e := c.encoder("gpt-4o")
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.CountChat("gpt-4o", msgs)
		}
	})
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := tokensForReply
			for _, m := range msgs {
				n += tokensPerMessage + e.count(m.Role) + e.count(m.Text.Parts[0])
			}
		}
	})
}

// BenchmarkCountChatCold is BenchmarkCountChat's "cached" count with 8 MB
// of other memory read between counts, as a node at a few hundred requests
// per second runs it: each request finds its tables evicted from the
// core's caches by the other work since the last one. It reports the
// count's own time (count-ns), without the reading.
func BenchmarkCountChatCold(b *testing.B) {
	c := NewCounter()
	msgs := overheadMessages()
	c.CountChat("gpt-4o", msgs)
	other := make([]byte, 8<<20)
	var sink byte
	var spent time.Duration
	n := 0
	for b.Loop() {
		for i := 0; i < len(other); i += 64 {
			sink += other[i]
		}
		start := time.Now()
		c.CountChat("gpt-4o", msgs)
		spent += time.Since(start)
		n++
	}
	b.ReportMetric(float64(spent.Nanoseconds())/float64(n), "count-ns")
	_ = sink
}

package tokens

import (
	"os"
	"strings"
	"testing"

	"github.com/tiktoken-go/tokenizer"

	"github.com/llmgate/llmgate/internal/cputime"
)

// benchTexts are typical prompts: English prose with punctuation and digits,
// Go code, and mixed-script chat.
func benchTexts(b *testing.B) map[string]string {
	code, err := os.ReadFile("split.go")
	if err != nil {
		b.Fatal(err)
	}
	return map[string]string{
		"prose": strings.Repeat("The quick brown fox jumps over the lazy dog, doesn't it? It's 12:45 and we'll meet at 3 pm. ", 22),
		"code":  string(code[:min(len(code), 6<<10)]),
		"mixed": strings.Repeat("Summarise: こんにちは世界, Привет мир! Ça va? 🙂 x := f(a, b) // 2024-06-01\n", 25),
	}
}

// BenchmarkCount measures this package's counting, in MB/s of text.
func BenchmarkCount(b *testing.B) {
	c := NewCounter()
	for name, text := range benchTexts(b) {
		for _, model := range []string{"gpt-4o", "gpt-4"} {
			c.Count(model, text)
			b.Run(name+"/"+string(EncodingFor(model)), func(b *testing.B) {
				measure(b, len(text), func() { c.Count(model, text) })
			})
		}
	}
}

// BenchmarkCountTokenizer is the same texts counted by the tokenizer alone,
// the reference BenchmarkCount is compared with.
func BenchmarkCountTokenizer(b *testing.B) {
	for name, text := range benchTexts(b) {
		for _, enc := range []tokenizer.Encoding{tokenizer.O200kBase, tokenizer.Cl100kBase} {
			codec, err := tokenizer.Get(enc)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(name+"/"+string(enc), func(b *testing.B) {
				measure(b, len(text), func() {
					if _, err := codec.Count(text); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
	}
}

// BenchmarkCountHostile is text the tokenizer alone takes quadratic time on.
func BenchmarkCountHostile(b *testing.B) {
	c := NewCounter()
	for name, text := range map[string]string{
		"newline-space-newline": strings.Repeat("\n \n", 1<<15),
		"spaces":                "a" + strings.Repeat(" ", 1<<16) + "b",
		"one-word":              strings.Repeat("qz", 1<<15),
	} {
		c.Count("gpt-4o", text)
		b.Run(name, func(b *testing.B) {
			measure(b, len(text), func() { c.Count("gpt-4o", text) })
		})
	}
}

// measure runs count in the benchmark loop and reports, besides the wall-clock
// MB/s, the MB per second of CPU time the process used: on a machine shared
// with other work the wall clock overstates the cost, the CPU time does not.
func measure(b *testing.B, size int, count func()) {
	b.ReportAllocs()
	b.SetBytes(int64(size))
	start := cputime.Process()
	n := 0
	for b.Loop() {
		count()
		n++
	}
	if used := cputime.Process() - start; used > 0 {
		b.ReportMetric(float64(size)*float64(n)/used.Seconds()/1e6, "MB/cpu-s")
	}
}

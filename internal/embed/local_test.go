package embed

import (
	"math"
	"strings"
	"sync"
	"testing"
)

func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func checkUnit(t *testing.T, text string, v []float32) {
	t.Helper()
	if len(v) != Dim {
		t.Fatalf("Embed(%q) has %d dimensions, want %d", text, len(v), Dim)
	}
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			t.Fatalf("Embed(%q)[%d] = %v", text, i, x)
		}
	}
	if n := dot(v, v); math.Abs(n-1) > 1e-5 {
		t.Errorf("Embed(%q) has squared norm %v, want 1", text, n)
	}
}

func TestEmbedIsAUnitVector(t *testing.T) {
	for _, l := range []*Local{NewLocal(), NewHashed()} {
		if l.Dim() != Dim {
			t.Errorf("Dim() = %d", l.Dim())
		}
		for _, text := range []string{
			"", " ", "\n\t  ", "?!...", "a", "The", "the the the the",
			"How do I reset my password?", "Größe und Übermaß — naïve café", "東京の天気は？",
			"\x00tokens:[1,2,3]", strings.Repeat("long prompt with many words ", 200),
			"\xff\xfe invalid utf-8",
		} {
			checkUnit(t, text, l.Embed(text))
		}
	}
}

func TestEmptyTextsShareOneVector(t *testing.T) {
	l := NewLocal()
	a, b := l.Embed(""), l.Embed("  \n ?")
	if dot(a, b) < 0.9999 {
		t.Errorf("empty and punctuation-only text embed differently (cosine %v)", dot(a, b))
	}
}

func TestEmbedIsDeterministic(t *testing.T) {
	text := "Explain the difference between TCP and UDP, with 3 examples."
	a, b := NewLocal().Embed(text), NewLocal().Embed(text)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("two embeddings of the same text differ at %d: %v vs %v", i, a[i], b[i])
		}
	}
}

func TestParaphraseIsCloserThanUnrelated(t *testing.T) {
	tests := []struct{ name, a, para, unrelated string }{
		{"reordered question", "How do I reset my password?", "How can I reset my password?", "The weather in Paris is sunny today."},
		{"synonym via word vectors", "What is the price of a car?", "What is the cost of an automobile?", "How do volcanoes erupt?"},
		{"case and punctuation", "what is kubernetes", "What is Kubernetes?!", "what is a mortgage"},
	}
	for _, l := range []*Local{NewLocal(), NewHashed()} {
		for _, tt := range tests {
			a, p, u := l.Embed(tt.a), l.Embed(tt.para), l.Embed(tt.unrelated)
			if dot(a, p) <= dot(a, u) {
				t.Errorf("%s (dim split %d): paraphrase cosine %.3f, unrelated %.3f", tt.name, l.cfg.hashDims, dot(a, p), dot(a, u))
			}
		}
	}
}

func TestWordVectorsLinkSynonyms(t *testing.T) {
	combined, hashed := NewLocal(), NewHashed()
	a, b := "car", "automobile"
	if c, h := dot(combined.Embed(a), combined.Embed(b)), dot(hashed.Embed(a), hashed.Embed(b)); c <= h+0.05 {
		t.Errorf("cosine(car, automobile) = %.3f with word vectors, %.3f without: the table is not used", c, h)
	}
}

func TestTable(t *testing.T) {
	tb, ok := parseTable(wordvecBin)
	if !ok {
		t.Fatal("wordvec.bin does not parse")
	}
	if tb.n != 40000 {
		t.Errorf("table has %d words, want 40000", tb.n)
	}
	for _, w := range []string{"the", "of", "password", "automobile"} {
		i := tb.lookup(wordHash([]byte(w)))
		if i < 0 {
			t.Errorf("%q not in the table", w)
			continue
		}
		if w == "the" && tb.rank(i) != 0 {
			t.Errorf("rank of %q = %d, want 0", w, tb.rank(i))
		}
	}
	if i := tb.lookup(wordHash([]byte("xqzvkwlrp"))); i >= 0 {
		t.Errorf("nonsense word found at %d", i)
	}
	if _, ok := parseTable(wordvecBin[:len(wordvecBin)-1]); ok {
		t.Error("a truncated table parses")
	}
}

func TestConcurrentEmbed(t *testing.T) {
	l := NewLocal()
	want := l.Embed("concurrent use is safe")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				got := l.Embed("concurrent use is safe")
				if got[7] != want[7] || got[300] != want[300] {
					t.Error("concurrent Embed differs")
					return
				}
			}
		})
	}
	wg.Wait()
}

// prompt100 is a 100-word prompt.
var prompt100 = strings.Join(strings.Fields(`I am planning a two week trip to Japan in April with my
family of four, including two small children. We would like to visit Tokyo, Kyoto, Osaka and
Hiroshima, and we are interested in temples, gardens, food markets and day trips that are not
too tiring. Could you suggest a detailed itinerary with train connections, the rough costs of
hotels and tickets in yen, which rail pass is worth buying, and practical tips for travelling
with a stroller on public transport? We do not speak Japanese, so please also explain how to
order food in small local restaurants today.`), " ")

func TestEmbedAllocatesOnlyTheResult(t *testing.T) {
	if n := len(strings.Fields(prompt100)); n != 100 {
		t.Fatalf("prompt100 has %d words", n)
	}
	l := NewLocal()
	if n := testing.AllocsPerRun(20, func() { l.Embed(prompt100) }); n > 1 {
		t.Errorf("Embed of a 100-word prompt allocates %v times, want 1 (the result)", n)
	}
}

func BenchmarkEmbed100Words(b *testing.B) {
	for _, bc := range []struct {
		name string
		l    *Local
	}{{"local", NewLocal()}, {"hashed", NewHashed()}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(prompt100)))
			for b.Loop() {
				bc.l.Embed(prompt100)
			}
		})
	}
}

func TestSymbolsMoveTheVector(t *testing.T) {
	l := NewLocal()
	for _, p := range [][2]string{{"print(7 + 3)", "print(7 - 3)"}, {"a == b", "a != b"}, {"i++", "i--"}, {"C++", "C#"}, {"$100", "€100"}, {"20%", "20"}, {"2*10", "2^10"}} {
		a, b := l.Embed(p[0]), l.Embed(p[1])
		var dot float32
		for i := range a {
			dot += a[i] * b[i]
		}
		if 1-dot < 0.01 {
			t.Errorf("%q and %q are at distance %.4f", p[0], p[1], 1-dot)
		}
	}
	a, b := l.Embed("a well-known fact"), l.Embed("a well known fact")
	var dot float32
	for i := range a {
		dot += a[i] * b[i]
	}
	if 1-dot > 0.0001 {
		t.Errorf("a hyphen inside a word moved the vector by %.4f", 1-dot)
	}
}

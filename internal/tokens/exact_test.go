package tokens

import (
	"encoding/json"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2/v2"
	"github.com/tiktoken-go/tokenizer"
)

// The reference: github.com/tiktoken-go/tokenizer's codecs, and their split
// patterns compiled by regexp2 exactly as the tokenizer compiles them (the
// tokenizer registers generated matchers for these pattern strings, so
// these are the very matchers it runs).
const (
	o200kPattern  = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	cl100kPattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

type reference struct {
	enc     tokenizer.Encoding
	model   string
	codec   tokenizer.Codec
	pattern *regexp2.Regexp
}

var references = sync.OnceValues(func() ([]reference, error) {
	var refs []reference
	for _, r := range []struct {
		enc     tokenizer.Encoding
		model   string
		pattern string
	}{{tokenizer.O200kBase, "gpt-4o", o200kPattern}, {tokenizer.Cl100kBase, "gpt-4", cl100kPattern}} {
		codec, err := tokenizer.Get(r.enc)
		if err != nil {
			return nil, err
		}
		refs = append(refs, reference{r.enc, r.model, codec, regexp2.MustCompile(r.pattern, regexp2.None)})
	}
	return refs, nil
})

func refs(t testing.TB) []reference {
	t.Helper()
	r, err := references()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// refPieces returns the pieces the tokenizer splits s into.
func (r reference) pieces(t testing.TB, s string) []string {
	var out []string
	m, err := r.pattern.FindStringMatch(s)
	for ; m != nil && err == nil; m, err = r.pattern.FindNextMatch(m) {
		out = append(out, m.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ourPieces returns the pieces this package splits s into.
func ourPieces(c *Counter, model, s string) []string {
	e := c.encoder(model)
	if !utf8.ValidString(s) {
		s = string([]rune(s))
	}
	var out []string
	for i := 0; i < len(s); {
		var end int
		var ok bool
		if e.o200k {
			end, ok = e.classes.splitO200k(s, i)
		} else {
			end, ok = e.classes.splitCl100k(s, i)
		}
		if ok {
			out = append(out, s[i:end])
		}
		i = end
	}
	return out
}

// checkSame fails unless the Counter splits s into the tokenizer's pieces and
// counts as many tokens in s as the tokenizer, under both encodings.
func checkSame(t testing.TB, c *Counter, s string) {
	t.Helper()
	for _, r := range refs(t) {
		want := r.pieces(t, s)
		got := ourPieces(c, r.model, s)
		if len(got) != len(want) {
			t.Fatalf("%s: %d pieces, the tokenizer makes %d\nours %q\nwant %q\ntext %q", r.enc, len(got), len(want), clip(got), clip(want), clipText(s))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: piece %d is %q, the tokenizer's is %q; text %q", r.enc, i, got[i], want[i], clipText(s))
			}
		}
		wantN, err := r.codec.Count(s)
		if err != nil {
			t.Fatal(err)
		}
		if gotN := c.Count(r.model, s); gotN != wantN {
			t.Fatalf("%s: Count = %d, the tokenizer counts %d; text %q", r.enc, gotN, wantN, clipText(s))
		}
	}
}

func clip(p []string) []string {
	if len(p) > 40 {
		return p[:40]
	}
	return p
}

func clipText(s string) string {
	if len(s) > 400 {
		return s[:400] + "…"
	}
	return s
}

func TestExactOnLabelledPairs(t *testing.T) {
	c := NewCounter()
	pairs := labelledPairs(t)
	if len(pairs) < 100 {
		t.Fatalf("only %d pairs", len(pairs))
	}
	var all strings.Builder
	for _, p := range pairs {
		checkSame(t, c, p.Origin)
		checkSame(t, c, p.Similar)
		all.WriteString(p.Origin + "\n" + p.Similar + "\n\n")
	}
	checkSame(t, c, all.String())
	tsv, err := os.ReadFile("../../index/testdata/paws_dev_300.tsv")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(tsv)) {
		checkSame(t, c, line)
	}
	checkSame(t, c, string(tsv))
}

// TestExactOnSourceCode compares counts on every Go, Markdown and YAML file
// of this repository (code, comments, prose, the mock's vocabulary, tables).
func TestExactOnSourceCode(t *testing.T) {
	c := NewCounter()
	files, total := 0, 0
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != "../.." {
			return filepath.SkipDir
		}
		switch filepath.Ext(path) {
		case ".go", ".md", ".yaml", ".tsv", ".json":
		default:
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if len(b) > 48<<10 || total > 512<<10 {
			return nil // bounded, for the race detector's sake
		}
		total += len(b)
		files++
		checkSame(t, c, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("only %d files compared", files)
	}
}

func TestExactOnHandPickedText(t *testing.T) {
	c := NewCounter()
	tests := []struct {
		name string
		text string
	}{
		{"empty", ""},
		{"contractions in odd cases", "I'M sure he'S gone; WE'LL see, they'RE here, you'Ve 'D 'LL 'll's 'S'T 'x 'ſ Iſ'ſ ſ"},
		{"contractions after digits and punctuation", "1's 2'T ''s .'s ('re) '''' ' s 'R E"},
		{"contraction at start and end", "'s"},
		{"lone apostrophes", "'''"},
		{"camel and title case", "HTTPServer getHTTPResponseCode XMLHttpRequest ǅungla ǈ Ǳ ǲ"},
		{"combining marks", "e\u0301te\u0301 a\u0300\u0301\u0302b \u0301\u0301x \u0301 \u0301\u0301"},
		{"marks after punctuation", ".\u0301a !\u0301\u0301 ,\u0301A"},
		{"digits", "1 12 123 1234 12345 123456789012 ١٢٣٤ ⅠⅡⅢⅣ ½¼ ²³ 1.5 1,000,000"},
		{"whitespace bomb", strings.Repeat("\n \n", 500)},
		{"mixed whitespace", " \t\n\r\n \u00a0\u3000\u2028\u2029\u0085\v\f x \t \u3000y\n\n\n   z   "},
		{"trailing spaces", "hello   "},
		{"leading spaces", "   hello"},
		{"space before punctuation", "a !? ,; \n/ ./ .\n/ .\r\n/ x//y"},
		{"cjk", "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。\n/何でも薄暗い"},
		{"emoji", "🙂👍🏽👨‍👩‍👧‍👦 🇫🇷 ❤️ x🙂y"},
		{"del is dropped", "a\x7fb \x7f \x7f\x7f\n\x7f"},
		{"control characters", "\x00\x01\x1c\x1d\x1e\x1f a\x00b"},
		{"invalid utf-8", "a\xffb \xc3 \xe3\x81 \xed\xa0\x80 ok"},
		{"special token text", "<|endoftext|> <|endofprompt|>"},
		{"hangul and thai", "안녕하세요 세계 สวัสดีชาวโลก"},
		{"arabic and hebrew", "مرحبا بالعالم שלום עולם"},
		{"devanagari", "नमस्ते दुनिया"},
		{"long word", strings.Repeat("abcdefghij", 300)},
		{"long digit run", strings.Repeat("0123456789", 300)},
		{"long punctuation run", strings.Repeat("!@#$%^&*()-=+[]{};:,.<>/?", 200)},
		{"long cjk run", strings.Repeat("漢字仮名交じり文", 300)},
		{"long emoji run", strings.Repeat("🙂", 500)},
		{"long mark run", "a" + strings.Repeat("\u0301", 500)},
		{"long space run", "a" + strings.Repeat(" ", 5000) + "b"},
		{"long tab run ending the text", "a" + strings.Repeat("\t", 5000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkSame(t, c, tt.text)
		})
	}
}

// TestExactOnEveryRune puts runes in contexts that exercise each
// alternative of the patterns, so that every rune's classes agree with the
// tokenizer's. By default it takes the runes at and around every range
// boundary of the Unicode tables the patterns use (classes only change
// there) and every 251st rune besides; TOKENS_EVERY_RUNE=1 takes all
// 1,112,064 scalar values (about 90 s of CPU, without the race detector).
func TestExactOnEveryRune(t *testing.T) {
	c := NewCounter()
	var runes []rune
	if os.Getenv("TOKENS_EVERY_RUNE") != "" {
		for r := rune(0); r <= unicode.MaxRune; r++ {
			runes = append(runes, r)
		}
	} else {
		seen := map[rune]bool{}
		add := func(r rune) {
			if r >= 0 && r <= unicode.MaxRune && !seen[r] {
				seen[r] = true
				runes = append(runes, r)
			}
		}
		for _, tab := range []*unicode.RangeTable{unicode.L, unicode.Lu, unicode.Ll, unicode.Lt, unicode.Lm,
			unicode.Lo, unicode.M, unicode.N, unicode.White_Space} {
			for _, r := range tab.R16 {
				for _, x := range []rune{rune(r.Lo) - 1, rune(r.Lo), rune(r.Lo) + 1, rune(r.Hi) - 1, rune(r.Hi), rune(r.Hi) + 1} {
					add(x)
				}
			}
			for _, r := range tab.R32 {
				for _, x := range []rune{rune(r.Lo) - 1, rune(r.Lo), rune(r.Lo) + 1, rune(r.Hi) - 1, rune(r.Hi), rune(r.Hi) + 1} {
					add(x)
				}
			}
		}
		for r := rune(0); r < 0x100; r++ {
			add(r)
		}
		for r := rune(0); r <= unicode.MaxRune; r += 251 {
			add(r)
		}
	}
	var b strings.Builder
	flush := func() {
		checkSame(t, c, b.String())
		b.Reset()
	}
	for _, r := range runes {
		if !utf8.ValidRune(r) {
			continue
		}
		s := string(r)
		b.WriteString(s + "a" + s + "A" + s + s + "1 " + s + "'s " + s + "\n" + s + "x'Ll" + s + " ." + s + "\u0301b" + s + "\n/" + s + " ")
		if b.Len() > 16<<10 {
			flush()
		}
	}
	flush()
}

// TestExactOnRandomText compares counts on random text drawn from alphabets
// that stress each part of the patterns.
func TestExactOnRandomText(t *testing.T) {
	c := NewCounter()
	alphabets := map[string][]string{
		"whitespace": {" ", " ", "\t", "\n", "\r", "\r\n", "\u3000", "\u2028", "\u00a0", "\u0085", "\f", "\v", "x", ".", "/"},
		"prose":      {"the", " ", "The", "quick", ",", ".", "\n", "'s", "'T", "I", "'", "é", "1", "22", "(", ")"},
		"code":       {"func", " ", "\t", "\n", "{", "}", "(", ")", ":=", "x", "Err", "0x1F", "//", "\"", "`", "_", "ID"},
		"unicode":    {"中", "語", "。", "\u0301", "ǅ", "ʰ", "ß", "İ", "ſ", "١", "½", "🙂", "\u200d", "\ufe0f", "\U0001F1EB", "€", "\x7f"},
		"mixed":      {" ", "\n", "a", "A", "1", ".", "'", "s", "\u0301", "中", "ʰ", "\t", "/", "\r", "Ⅻ", "ǅ"},
	}
	rng := rand.New(rand.NewPCG(15, 15))
	rounds := 200
	if testing.Short() {
		rounds = 40
	}
	for name, alpha := range alphabets {
		t.Run(name, func(t *testing.T) {
			for range rounds {
				var b strings.Builder
				size := 1 + rng.IntN(600)
				for b.Len() < size {
					b.WriteString(alpha[rng.IntN(len(alpha))])
				}
				checkSame(t, c, b.String())
			}
		})
	}
	t.Run("random runes", func(t *testing.T) {
		for range rounds {
			var b strings.Builder
			for range 1 + rng.IntN(200) {
				var r rune
				switch rng.IntN(4) {
				case 0:
					r = rune(rng.IntN(0x80))
				case 1:
					r = rune(rng.IntN(0x800))
				case 2:
					r = rune(rng.IntN(0x10000))
				default:
					r = rune(rng.IntN(unicode.MaxRune + 1))
				}
				b.WriteRune(r)
			}
			checkSame(t, c, b.String())
		}
	})
	t.Run("random bytes", func(t *testing.T) {
		for range rounds {
			p := make([]byte, 1+rng.IntN(300))
			for i := range p {
				p[i] = byte(rng.IntN(256))
			}
			checkSame(t, c, string(p))
		}
	})
}

// TestCacheKeepsCountsExact counts the same rare words many times, so that
// later counts come from the piece cache, and checks them against the
// tokenizer; and fills the cache past its size so that slots are replaced.
func TestCacheKeepsCountsExact(t *testing.T) {
	c := NewCounter()
	rng := rand.New(rand.NewPCG(1, 5))
	letters := "qxzjkvwyfbgh"
	var words []string
	for range cacheSlots + 1024 {
		var b strings.Builder
		for range 6 + rng.IntN(10) {
			b.WriteByte(letters[rng.IntN(len(letters))])
		}
		words = append(words, b.String())
	}
	for range 2 {
		for i := 0; i < len(words); i += 256 {
			checkSame(t, c, strings.Join(words[i:min(i+256, len(words))], " "))
		}
	}
}

func FuzzCountIsExact(f *testing.F) {
	for _, s := range []string{
		"hello world", strings.Repeat("\n \n", 40), "a" + strings.Repeat("\u2003\n", 30) + "b",
		"." + strings.Repeat("\n", 70) + "/", "I'M he'S 'll ſ", "e\u0301\u0301X", "\x7f\xff", "١٢٣٤5",
	} {
		f.Add(s)
	}
	c := NewCounter()
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 8<<10 {
			return
		}
		checkSame(t, c, s)
	})
}

// TestCountLongPieceIsClose covers pieces longer than maxExactPiece, merged in
// parts: the count stays within a token per part of the tokenizer's.
func TestCountLongPieceIsClose(t *testing.T) {
	c := NewCounter()
	tests := []struct {
		name string
		text string
	}{
		{"word of three parts", strings.Repeat("qz", 3*maxExactPiece/2+7)},
		{"space run of three parts", "a" + strings.Repeat(" ", 3*maxExactPiece) + "b"},
		{"cjk run of three parts", strings.Repeat("漢字", maxExactPiece/2+5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range refs(t) {
				want, err := r.codec.Count(tt.text)
				if err != nil {
					t.Fatal(err)
				}
				got := c.Count(r.model, tt.text)
				if parts := len(tt.text)/maxExactPiece + 1; got < want-parts || got > want+parts {
					t.Errorf("%s: Count = %d, the tokenizer counts %d: off by more than a token per part", r.enc, got, want)
				}
			}
		})
	}
}

// labelledPairs reads the labelled prompt pairs the index's tests use (a
// 300-pair subset of the GPTCache mock data).
func labelledPairs(t *testing.T) []struct{ Origin, Similar string } {
	t.Helper()
	raw, err := os.ReadFile("../../index/testdata/gptcache_300.json")
	if err != nil {
		t.Fatal(err)
	}
	var pairs []struct{ Origin, Similar string }
	if err := json.Unmarshal(raw, &pairs); err != nil {
		t.Fatal(err)
	}
	return pairs
}

package norm

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// refText is Text as it was before it normalised into one buffer: the
// normalised tier's keys are persisted and replicated, so the rewrite must
// give the same text.
func refText(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i, turn := range strings.Split(s, turnSep) {
		if i > 0 {
			b.WriteString(turnSep)
		}
		b.WriteString(refNormTurn(turn))
	}
	return b.String()
}

func refNormTurn(s string) string {
	var lines []string
	for _, line := range strings.Split(s, "\n") {
		lines = append(lines, refNormLine(line))
	}
	// Drop empty lines at both ends.
	for len(lines) > 0 && lines[0] == "" {
		lines = lines[1:]
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	out := strings.Join(lines, "\n")
	return refRewrite(out)
}

// normLine lower-cases words (not acronyms), drops sentence punctuation,
// collapses inner spaces and trims trailing ones; leading indentation stays.
func refNormLine(line string) string {
	indent := len(line) - len(strings.TrimLeft(line, " \t"))
	var b strings.Builder
	b.WriteString(line[:indent])
	rest := strings.ReplaceAll(line[indent:], "’", "'")
	words := strings.Fields(rest)
	for i, w := range words {
		w = trimSentencePunct(w)
		if w == "" {
			continue
		}
		if i > 0 && b.Len() > indent {
			b.WriteByte(' ')
		}
		b.WriteString(lowerWord(w))
	}
	return b.String()
}

// rewrite applies the meaning-preserving rewrites to a normalised turn.
func refRewrite(s string) string {
	words := strings.Split(s, " ")
	out := make([]string, 0, len(words)+2)
	for i := 0; i < len(words); i++ {
		w := words[i]
		switch {
		case w == "please":
			continue
		case w == "what's":
			out = append(out, "what", "is")
			continue
		case w == "how" && i+2 < len(words) && words[i+1] == "can" && words[i+2] == "i":
			out = append(out, "how", "do", "i")
			i += 2
			continue
		case len(out) == 0 && w == "tell" && i+2 < len(words) && words[i+1] == "me" && words[i+2] == "the":
			out = append(out, "what", "is", "the")
			i += 2
			continue
		}
		out = append(out, w)
	}
	return strings.Join(out, " ")
}

func TestTextMatchesReference(t *testing.T) {
	texts := []string{
		"", "\n", "\n\n a \n\n", "  \t  ", "x\n  \n\ny", "please", "please please", "how can i", "How can I", "Tell me the way",
		"tell me the", "a tell me the b", "what's what’s WHAT'S", "i++. x!= .", "  indented  code   here  ", "a\x1e\x1eb\x1e",
		"Größe ÜBER naïve İstanbul ΣΑΣ ǅemal", "\xff\xfeA\xc3 B", "a\u00a0b\u2003c\u0085d\ve\ff\rg", "I am X and Y. US, iPhone!",
		"how  can i  do it", "please\nplease\n\nhow can i\x1etell me the answer, please?",
	}
	for _, dir := range []string{"../testdata/gptcache_300.json", "../testdata/paws_dev_300.tsv"} {
		raw, err := os.ReadFile(dir)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(dir, ".json") {
			var pairs []struct{ Origin, Similar string }
			if err := json.Unmarshal(raw, &pairs); err != nil {
				t.Fatal(err)
			}
			for _, p := range pairs {
				texts = append(texts, p.Origin, p.Similar, p.Origin+"\x1e"+p.Similar)
			}
			continue
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if f := strings.Split(line, "\t"); len(f) == 4 {
				texts = append(texts, f[1], f[2], f[1]+"\n\n  "+f[2])
			}
		}
	}
	for _, s := range texts {
		if got, want := Text(s), refText(s); got != want {
			t.Fatalf("Text(%q) = %q, the reference gives %q", s, got, want)
		}
	}
}

// FuzzTextMatchesReference: Text gives the reference's text on any input.
func FuzzTextMatchesReference(f *testing.F) {
	for _, s := range []string{"How can I do it?", "a\x1eb", "  x  y \n z", "i++.", "What's up, please!", "\n\ntell me the x\n\n", "Ǆ\xffA  B"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := Text(s), refText(s); got != want {
			t.Fatalf("Text(%q) = %q, the reference gives %q", s, got, want)
		}
	})
}

// BenchmarkText normalises the overhead benchmark's cache-miss prompt,
// against the reference implementation.
func BenchmarkText(b *testing.B) {
	s := "How should our team rotate the access keys of the billing service in region 18 when traffic doubles during the quarterly launch?"
	for _, bc := range []struct {
		name string
		f    func(string) string
	}{{"reference", refText}, {"text", Text}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bc.f(s)
			}
		})
	}
}

package embed

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// refEmbed is Embed as it was before its hot loops were rewritten (a sort
// through the words, a closure per character n-gram byte, a branch per
// sign, a rune decode per symbol check): cached vectors are persisted and
// compared with new ones, so the rewrite must give the same bits.
func (l *Local) refEmbed(text string) []float32 {
	var lowBuf [1024]byte
	var wordBuf [128]word
	low, words := l.tokenize(text, lowBuf[:0], wordBuf[:0])
	var hacc [Dim]float32
	var vacc [wordVecDim]float32
	hd := l.cfg.hashDims
	h := hacc[:hd]
	order := make([]int32, 0, len(words))
	for i := range words {
		order = append(order, int32(i))
	}
	slices.SortFunc(order, func(a, b int32) int {
		ha, hb := words[a].hash, words[b].hash
		switch {
		case ha < hb:
			return -1
		case ha > hb:
			return 1
		}
		return int(a - b)
	})
	for i := 0; i < len(order); {
		j := i + 1
		for j < len(order) && words[order[j]].hash == words[order[i]].hash {
			j++
		}
		w := &words[order[i]]
		tf := float32(1)
		if j-i > 1 {
			tf = 1 + float32(math.Log(float64(j-i)))
		}
		wt := w.weight * tf
		refAddHashed(h, mix(w.hash, 'w'), l.cfg.wordW*wt)
		l.refAddCharGrams(h, low[w.start:w.end], l.cfg.charW*wt)
		i = j
	}
	refAddSymbols(h, text, l.cfg.wordW)
	for i := 0; i+1 < len(words); i++ {
		a, b := &words[i], &words[i+1]
		refAddHashed(h, mix(a.hash*31+b.hash, 'b'), l.cfg.bigramW*0.5*(a.weight+b.weight))
	}
	vecs := 0
	if l.cfg.vecW > 0 {
		for i := range words {
			if w := &words[i]; w.vec >= 0 {
				ww := w.weight * math.Float32frombits(uint32(l.wv.scales[4*w.vec])|uint32(l.wv.scales[4*w.vec+1])<<8|uint32(l.wv.scales[4*w.vec+2])<<16|uint32(l.wv.scales[4*w.vec+3])<<24)
				q := l.wv.vecs[wordVecDim*w.vec : wordVecDim*(w.vec+1)]
				for k := range vacc {
					vacc[k] += float32(ww * float32(int8(q[k]))) // never fused, as addVec
				}
				vecs++
			}
		}
	}
	out := make([]float32, Dim)
	hn, vn := norm(h), norm(vacc[:])
	if hn == 0 && vn == 0 {
		out[0] = 1
		return out
	}
	hw, vw := float32(1), float32(0)
	if vecs > 0 && vn > 0 {
		vw = l.cfg.vecW
		hw = float32(math.Sqrt(float64(1 - vw*vw)))
	}
	if hn == 0 {
		hw, vw = 0, 1
	}
	if hw > 0 {
		s := hw / hn
		for k, x := range h {
			out[k] = x * s
		}
	}
	if vw > 0 {
		s := vw / vn
		for k, x := range vacc {
			out[hd+k] = x * s
		}
	}
	return out
}

func (l *Local) refAddCharGrams(h []float32, w []byte, wt float32) {
	n := len(w) + 2
	count := 0
	for g := l.cfg.minN; g <= l.cfg.maxN; g++ {
		if n >= g {
			count += n - g + 1
		}
	}
	if count == 0 || wt == 0 {
		return
	}
	wt /= float32(math.Sqrt(float64(count)))
	at := func(i int) byte {
		if i == 0 || i == n-1 {
			return ' '
		}
		return w[i-1]
	}
	for s := 0; s+l.cfg.minN <= n; s++ {
		f := uint64(fnvOffset)
		for k := 0; k < l.cfg.maxN && s+k < n; k++ {
			f = (f ^ uint64(at(s+k))) * fnvPrime
			if k+1 >= l.cfg.minN {
				refAddHashed(h, mix(f, byte('0'+k+1)), wt)
			}
		}
	}
}

func refAddHashed(h []float32, f uint64, wt float32) {
	d := (f >> 32) * uint64(len(h)) >> 32
	if f&1 == 1 {
		wt = -wt
	}
	h[d] += wt
}

func refAddSymbols(h []float32, text string, wt float32) {
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		if !isSymbol(r) {
			i += size
			continue
		}
		j := i + size
		for j < len(text) {
			r2, n := utf8.DecodeRuneInString(text[j:])
			if !isSymbol(r2) {
				break
			}
			j += n
		}
		if j-i == 1 && (text[i] == '-' || text[i] == '\'') && i > 0 && j < len(text) && isLetterByte(text[i-1]) && isLetterByte(text[j]) {
			i = j
			continue
		}
		f := uint64(fnvOffset)
		for k := i; k < j; k++ {
			f = (f ^ uint64(text[k])) * fnvPrime
		}
		refAddHashed(h, mix(f, 's'), wt)
		i = j
	}
}

// checkSameBits fails when Embed(text) and refEmbed(text) differ in any bit.
func checkSameBits(t *testing.T, l *Local, text string) {
	t.Helper()
	got, want := l.Embed(text), l.refEmbed(text)
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("Embed(%q)[%d] = %v, the reference gives %v", text, i, got[i], want[i])
		}
	}
}

func TestEmbedMatchesReferenceBitForBit(t *testing.T) {
	texts := []string{
		"", " ", "?!...", "a", "How do I reset my password?", "Größe und Übermaß — naïve café", "東京の天気は？",
		"print(7 + 3) == 10 && x++ || $100 at 20% — i-- C++ C# 2^10 a well-known fact don't",
		"\x00tokens:[1,2,3]\x7f\x1f~|{}", "\xff\xfe invalid utf-8 \xc3", strings.Repeat("long prompt with many words ", 200),
		"a " + strings.Repeat("x", 61) + " " + strings.Repeat("y", 62) + " " + strings.Repeat("z", 63) + " " + strings.Repeat("w", 300),
		"the the the the cat cat dog", prompt100,
	}
	for i := range 600 {
		texts = append(texts, overheadPrompt(i))
	}
	texts = append(texts, labelledTexts(t)...)
	for _, l := range []*Local{NewLocal(), NewHashed()} {
		for _, text := range texts {
			checkSameBits(t, l, text)
		}
	}
}

func TestASCIISymbolsAreSymbols(t *testing.T) {
	for c := range byte(utf8.RuneSelf) {
		if isASCIISymbol(c) != isSymbol(rune(c)) {
			t.Errorf("isASCIISymbol(%q) = %v, isSymbol says %v", c, isASCIISymbol(c), isSymbol(rune(c)))
		}
	}
}

// FuzzEmbedMatchesReference: Embed gives the reference's bits on any text.
func FuzzEmbedMatchesReference(f *testing.F) {
	for _, s := range []string{"", "How do I reset my password?", "a-b 'c' x==y", "\xff東京", strings.Repeat("q", 70)} {
		f.Add(s)
	}
	l := NewLocal()
	f.Fuzz(func(t *testing.T, s string) { checkSameBits(t, l, s) })
}

// overheadPrompt is the i-th prompt of the overhead benchmark's cache-miss
// feature.
func overheadPrompt(i int) string {
	verbs := []string{"configure", "monitor", "rotate", "scale", "debug", "secure", "migrate", "back up"}
	things := []string{"retry policy", "connection pool", "access keys", "deployment quota", "log pipeline", "alert rules", "network rules", "token budget"}
	owners := []string{"billing service", "search cluster", "data warehouse", "mobile backend", "payments gateway", "analytics jobs", "identity provider", "chat assistant"}
	return "How should our team " + verbs[i%len(verbs)] + " the " + things[(i/len(verbs))%len(things)] + " of the " +
		owners[(i/(len(verbs)*len(things)))%len(owners)] + " in region " + strings.Repeat("7", i%5+1) + " when traffic doubles during the quarterly launch?"
}

// labelledTexts are the texts of the labelled pairs the cache is tuned on.
func labelledTexts(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../index/testdata/gptcache_300.json")
	if err != nil {
		t.Fatal(err)
	}
	var pairs []struct{ Origin, Similar string }
	if err := json.Unmarshal(raw, &pairs); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pairs {
		out = append(out, p.Origin, p.Similar)
	}
	tsv, err := os.ReadFile("../../index/testdata/paws_dev_300.tsv")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(tsv), "\n") {
		if f := strings.Split(line, "\t"); len(f) == 4 {
			out = append(out, f[1], f[2])
		}
	}
	return out
}

// BenchmarkEmbedOverheadPrompt embeds the overhead benchmark's cache-miss
// prompts, against the reference implementation.
func BenchmarkEmbedOverheadPrompt(b *testing.B) {
	l := NewLocal()
	texts := make([]string, 512)
	for i := range texts {
		texts[i] = overheadPrompt(i)
	}
	for _, bc := range []struct {
		name string
		f    func(string) []float32
	}{{"reference", l.refEmbed}, {"embed", l.Embed}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				bc.f(texts[i%len(texts)])
				i++
			}
		})
	}
}

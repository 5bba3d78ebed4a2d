package embed

import (
	"math"
	"slices"
	"unicode"
	"unicode/utf8"
)

// Dim is the length of every vector Local returns: 384 float32s, so a million
// cached prompts take 1.5 GB of vectors.
const Dim = 384

// DefaultThreshold is the cosine-distance threshold (score_threshold) chosen
// for Local with the match guard on by `llmgate cache calibrate` (target
// precision 0.99) on the tuning half of the labelled pairs of bench cache;
// the held-out half and the subset in index/testdata (the quality-floor test
// in index/guard) score it.
const DefaultThreshold = 0.02

// config holds the weights of the features. Fixed at construction.
type config struct {
	hashDims int     // dimensions given to hashed features; the rest hold word vectors
	wordW    float32 // weight of a word feature
	bigramW  float32 // weight of a word-bigram feature
	charW    float32 // total weight of one word's character n-grams
	minN     int     // shortest character n-gram, in bytes, of the space-padded word
	maxN     int     // longest
	sifA     float32 // SIF smoothing, in ranks: weight(rank) = rank / (rank + sifA)
	vecW     float32 // share of the norm given to the word-vector block, 0..1
}

// defaultConfig is the configuration of NewLocal, chosen on the labelled
// pairs of bench cache (bench/cache_quality.go): around it, bigram weights
// 0.4–2, character weights 0.5–1.5, word-vector shares 0.3–0.7 and SIF
// constants 100–300 change the hit rate at 97 % precision by less than the
// noise, and 30k, 40k or 50k table words give the same numbers.
func defaultConfig() config {
	return config{
		hashDims: Dim - wordVecDim,
		wordW:    1,
		bigramW:  0.7,
		charW:    1,
		minN:     3,
		maxN:     5,
		sifA:     100,
		vecW:     0.5,
	}
}

// Local is the built-in embedder. It is immutable after construction and
// safe for concurrent use; constructing one is cheap (it aliases the embedded
// word-vector table), so callers may make one per use or share one.
type Local struct {
	cfg config
	wv  table
}

// NewLocal returns the default embedder: feature-hashed words, word bigrams
// and character 3–5-grams in 284 dimensions, joined with the SIF-weighted
// average of the GloVe vectors of the words in 100 dimensions.
func NewLocal() *Local { return newLocal(defaultConfig()) }

// NewHashed returns the feature-hashing half of NewLocal alone, spread over
// all Dim dimensions and without word vectors. It exists to measure what
// the word vectors add (bench cache).
func NewHashed() *Local {
	c := defaultConfig()
	c.hashDims, c.vecW = Dim, 0
	return newLocal(c)
}

func newLocal(c config) *Local {
	l := &Local{cfg: c}
	if c.vecW > 0 {
		l.wv, _ = parseTable(wordvecBin)
	}
	if l.wv.n == 0 {
		l.cfg.hashDims, l.cfg.vecW = Dim, 0
	}
	return l
}

// Dim is the length of the vectors Embed returns: always Dim.
func (l *Local) Dim() int { return Dim }

// hashAt is a word's hash and its index among the words, for sorting.
type hashAt struct {
	hash uint64
	i    int32
}

// word is one token of the text being embedded.
type word struct {
	start, end int     // bytes of the lowered text
	hash       uint64  // FNV-1a of the lowered bytes
	vec        int     // index in the word-vector table, or -1
	weight     float32 // SIF weight from the word's frequency rank; 1 when unknown
}

// Embed returns the unit-length embedding of text, Dim long. Equal texts
// give equal vectors on every platform. Text without letters or digits gets
// a fixed unit vector.
func (l *Local) Embed(text string) []float32 {
	var lowBuf [1024]byte
	var wordBuf [128]word
	low, words := l.tokenize(text, lowBuf[:0], wordBuf[:0])

	var hacc [Dim]float32
	var vacc [wordVecDim]float32
	hd := l.cfg.hashDims
	h := hacc[:hd]

	// Word features, once per distinct word with sublinear tf: sort word
	// indices by hash (then index) so equal words are adjacent. The hash
	// sits beside its index so that comparing reads no word.
	var orderBuf [128]hashAt
	order := orderBuf[:0]
	for i := range words {
		order = append(order, hashAt{words[i].hash, int32(i)})
	}
	slices.SortFunc(order, func(a, b hashAt) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return int(a.i - b.i)
	})
	for i := 0; i < len(order); {
		j := i + 1
		for j < len(order) && order[j].hash == order[i].hash {
			j++
		}
		w := &words[order[i].i]
		tf := float32(1)
		if j-i > 1 {
			tf = 1 + float32(math.Log(float64(j-i)))
		}
		wt := w.weight * tf
		addHashed(h, mix(w.hash, 'w'), l.cfg.wordW*wt)
		l.addCharGrams(h, low[w.start:w.end], l.cfg.charW*wt)
		i = j
	}
	// Symbols and operators ("+", "==", "++", "$", "%") are features too, so
	// that "7 + 3" and "7 - 3" are not the same point.
	addSymbols(h, text, l.cfg.wordW)
	for i := 0; i+1 < len(words); i++ {
		a, b := &words[i], &words[i+1]
		addHashed(h, mix(a.hash*31+b.hash, 'b'), l.cfg.bigramW*0.5*(a.weight+b.weight))
	}
	vecs := 0
	if l.cfg.vecW > 0 {
		for i := range words {
			if w := &words[i]; w.vec >= 0 {
				l.wv.addVec(&vacc, w.vec, w.weight)
				vecs++
			}
		}
	}

	out := make([]float32, Dim)
	hn := norm(h)
	vn := norm(vacc[:])
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

// tokenize appends to low the lower-cased words of text (letters and digits;
// everything else separates words) and to words their spans, hashes and
// weights.
func (l *Local) tokenize(text string, low []byte, words []word) ([]byte, []word) {
	start := -1
	flush := func() {
		if start < 0 {
			return
		}
		w := word{start: start, end: len(low), hash: wordHash(low[start:]), vec: -1, weight: 1}
		if i := l.wv.lookup(w.hash); i >= 0 {
			w.vec = i
			r := float32(l.wv.rank(i))
			w.weight = (r + 1) / (r + 1 + l.cfg.sifA)
		}
		words = append(words, w)
		start = -1
	}
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			default:
				flush()
				continue
			}
			if start < 0 {
				start = len(low)
			}
			low = append(low, c)
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		i += size
		if !unicode.IsLetter(r) && !unicode.IsNumber(r) {
			flush()
			continue
		}
		if start < 0 {
			start = len(low)
		}
		low = utf8.AppendRune(low, unicode.ToLower(r))
	}
	flush()
	return low, words
}

// addCharGrams adds the character n-grams of the space-padded word w, with
// total weight about wt (each of the k grams gets wt/√k).
func (l *Local) addCharGrams(h []float32, w []byte, wt float32) {
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
	// The padded word in one buffer, read without a branch per byte; a
	// longer word is read in place.
	var buf [64]byte
	if n > len(buf) {
		l.addLongCharGrams(h, w, wt)
		return
	}
	p := buf[:0]
	p = append(p, ' ')
	p = append(p, w...)
	p = append(p, ' ')
	minN, maxN := l.cfg.minN, l.cfg.maxN
	for s := 0; s+minN <= n; s++ {
		f := uint64(fnvOffset)
		g := p[s:min(s+maxN, n)]
		for k, c := range g {
			f = (f ^ uint64(c)) * fnvPrime
			if k+1 >= minN {
				addHashed(h, mix(f, byte('0'+k+1)), wt)
			}
		}
	}
}

// addLongCharGrams is addCharGrams of a word of more than 62 bytes, with wt
// already divided.
func (l *Local) addLongCharGrams(h []float32, w []byte, wt float32) {
	n := len(w) + 2
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
				addHashed(h, mix(f, byte('0'+k+1)), wt)
			}
		}
	}
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// wordHash is FNV-1a 64 of b. It must stay identical to hash in gen/main.go,
// which keys the word-vector table with it.
func wordHash(b []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range b {
		h = (h ^ uint64(c)) * fnvPrime
	}
	return h
}

// mix scrambles h with a feature kind (a finaliser from SplitMix64), so
// words, bigrams and n-grams of each length hash independently.
func mix(h uint64, kind byte) uint64 {
	h ^= uint64(kind) * 0x9e3779b97f4a7c15
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// addHashed adds wt to the dimension f selects, signed by f's lowest bit
// (the sign bit flipped, as negating does, without a branch the processor
// would guess wrong half the time).
func addHashed(h []float32, f uint64, wt float32) {
	d := (f >> 32) * uint64(len(h)) >> 32
	h[d] += math.Float32frombits(math.Float32bits(wt) ^ uint32(f&1)<<31)
}

func norm(v []float32) float32 {
	var s float32
	for _, x := range v {
		s += x * x
	}
	return float32(math.Sqrt(float64(s)))
}

// addSymbols adds a hashed feature of weight wt for each run of symbol
// characters in text: neither letters, digits, spaces nor sentence
// punctuation (. , ; : ? ! quotes), a hyphen or apostrophe inside a word
// excepted.
func addSymbols(h []float32, text string, wt float32) {
	for i := 0; i < len(text); {
		if c := text[i]; c < utf8.RuneSelf && !isASCIISymbol(c) {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		if !isSymbol(r) {
			i += size
			continue
		}
		j := i + size
		for j < len(text) {
			if c := text[j]; c < utf8.RuneSelf {
				if !isASCIISymbol(c) {
					break
				}
				j++
				continue
			}
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
		addHashed(h, mix(f, 's'), wt)
		i = j
	}
}

func isSymbol(r rune) bool {
	switch r {
	case '.', ',', ';', ':', '?', '!', '"', '\'', '`', '’', '‘', '“', '”', '…', '(', ')':
		return false
	}
	return !unicode.IsLetter(r) && !unicode.IsNumber(r) && !unicode.IsSpace(r) && !unicode.IsControl(r)
}

// isASCIISymbol is isSymbol of an ASCII character: printable, neither a
// letter, a digit, a space nor sentence punctuation.
func isASCIISymbol(c byte) bool {
	switch {
	case c <= ' ' || c >= 0x7f, 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return false
	}
	switch c {
	case '.', ',', ';', ':', '?', '!', '"', '\'', '`', '(', ')':
		return false
	}
	return true
}

func isLetterByte(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

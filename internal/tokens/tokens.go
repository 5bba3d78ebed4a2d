package tokens

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/tiktoken-go/tokenizer"

	"github.com/llmgate/llmgate/internal/openai"
)

// OpenAI's chat counting rule: every message costs a fixed overhead on top of
// the tokens of its values, a name costs one more, and the reply is primed
// with a fixed number of tokens.
const (
	tokensPerMessage = 3
	tokensPerName    = 1
	tokensForReply   = 3
)

const (
	// maxWhitespaceRun is the longest run of whitespace counted in one piece.
	// The tokenizer's cost grows with the square of a run's length.
	maxWhitespaceRun = 64
	// chunkSize is the length of text, in bytes, from which Count cuts the
	// text into pieces, bounding the memory one tokenizer call uses.
	chunkSize = 16 << 10
	// maxMemo bounds the per-call cache of whitespace piece counts.
	maxMemo = 256
)

// Counter counts tokens. It keeps one codec per encoding, built on first use.
// The zero value is not usable; call NewCounter. A Counter is safe for
// concurrent use.
type Counter struct {
	o200k  lazyCodec
	cl100k lazyCodec
}

type lazyCodec struct {
	enc   tokenizer.Encoding
	once  sync.Once
	codec tokenizer.Codec
}

func (l *lazyCodec) get() tokenizer.Codec {
	l.once.Do(func() {
		c, err := tokenizer.Get(l.enc)
		if err != nil {
			// Only reachable if the tokenizer stopped shipping an encoding
			// this package names as a constant: a build defect, not input.
			panic("tokens: building codec " + string(l.enc) + ": " + err.Error())
		}
		l.codec = c
	})
	return l.codec
}

// NewCounter returns a Counter. It does no work until the first count: the
// o200k_base codec takes about 25 ms and 7 MB to build, cl100k_base a little
// less, and each is built once per Counter.
func NewCounter() *Counter {
	return &Counter{
		o200k:  lazyCodec{enc: tokenizer.O200kBase},
		cl100k: lazyCodec{enc: tokenizer.Cl100kBase},
	}
}

// EncodingFor returns the encoding model uses: cl100k_base for gpt-4 (but not
// gpt-4o, gpt-4.1 or gpt-4.5), gpt-3.5, gpt-35 (Azure's spelling),
// text-embedding-3 and text-embedding-ada-002, and o200k_base for everything
// else, which covers gpt-4o, gpt-4.1, gpt-5, the o-series, chatgpt-4o and any
// name it does not know (such as an Azure deployment named by its owner).
// Matching ignores case and a fine-tuning prefix "ft:".
func EncodingFor(model string) tokenizer.Encoding {
	m := strings.ToLower(strings.TrimSpace(model))
	m = strings.TrimPrefix(m, "ft:")
	switch {
	case m == "gpt-4", strings.HasPrefix(m, "gpt-4-"),
		strings.HasPrefix(m, "gpt-3.5"), strings.HasPrefix(m, "gpt-35"),
		strings.HasPrefix(m, "text-embedding-3"), strings.HasPrefix(m, "text-embedding-ada-002"):
		return tokenizer.Cl100kBase
	}
	return tokenizer.O200kBase
}

func (c *Counter) codec(model string) tokenizer.Codec {
	if EncodingFor(model) == tokenizer.Cl100kBase {
		return c.cl100k.get()
	}
	return c.o200k.get()
}

// Count returns the number of tokens in text under model's encoding. It is
// exact for ordinary text; see the package documentation for the bounded
// inputs where it is an estimate.
func (c *Counter) Count(model, text string) int {
	if text == "" {
		return 0
	}
	return countText(c.codec(model), text)
}

// CountChat returns the prompt tokens of a chat request under OpenAI's rule:
// 3 tokens per message, plus the tokens of its role and content, plus 1 and
// the name's tokens if it has a name, plus 3 tokens priming the reply.
//
// Content may be a JSON string, null or absent, or an array of content parts,
// of which the "text" of parts of type "text" counts and other parts (images,
// audio) do not. Content of any other shape is counted as its raw bytes, an
// estimate. Tools and images are not covered by the rule; callers settle to
// the backend's reported usage.
func (c *Counter) CountChat(model string, messages []openai.Message) int {
	codec := c.codec(model)
	count := func(s string) int {
		if s == "" {
			return 0
		}
		return countText(codec, s)
	}
	n := tokensForReply
	for _, m := range messages {
		n += tokensPerMessage + count(m.Role)
		for _, s := range contentTexts(m.Content) {
			n += count(s)
		}
		if m.Name != "" {
			n += tokensPerName + count(m.Name)
		}
	}
	return n
}

// contentTexts returns the texts of a message's content that count as tokens.
func contentTexts(raw json.RawMessage) []string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return []string{s}
		}
	case '[':
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if json.Unmarshal(raw, &parts) == nil {
			var texts []string
			for _, p := range parts {
				if p.Type == "text" && p.Text != "" {
					texts = append(texts, p.Text)
				}
			}
			return texts
		}
	}
	return []string{string(raw)}
}

// countText counts text in pieces whose counts add up to the count of the
// whole (see nextPiece), so that no single tokenizer call is expensive.
func countText(codec tokenizer.Codec, text string) int {
	if len(text) <= chunkSize && !hasLongWhitespaceRun(text) {
		return countPiece(codec, text)
	}
	var memo map[string]int
	total := 0
	for text != "" {
		var piece string
		piece, text = nextPiece(text)
		if !isAllSpace(piece) {
			total += countPiece(codec, piece)
			continue
		}
		// Runs of whitespace are cut into pieces that often repeat (a long
		// run of one pattern); count each distinct piece once.
		n, ok := memo[piece]
		if !ok {
			n = countPiece(codec, piece)
			if memo == nil {
				memo = make(map[string]int)
			}
			if len(memo) < maxMemo {
				memo[piece] = n
			}
		}
		total += n
	}
	return total
}

// countPiece counts one piece with the codec. The codec only fails in its
// strict UTF-8 mode, which a Counter never sets; should it fail anyway, the
// piece is estimated at four bytes per token rather than counted as free.
func countPiece(codec tokenizer.Codec, s string) int {
	n, err := codec.Count(s)
	if err != nil {
		return (len(s) + 3) / 4
	}
	return n
}

// nextPiece splits text into a head to count on its own and the rest, such
// that no head is expensive to tokenize and the heads' counts add up to the
// count of the whole text. It cuts only where neither encoding's split
// pattern lets a token span the cut, so the cut is exact:
//
//   - to keep heads near chunkSize bytes, before a space that follows a
//     non-space character, or after a whitespace run that ends in a line
//     break and is followed by anything but '/' (o200k_base keeps "\n/"
//     after punctuation together);
//   - inside a whitespace run longer than maxWhitespaceRun bytes, right after
//     a maximal group of line breaks. Each token of such a run ends at a line
//     break group, and finding it scans to the end of the run: cutting the run
//     every maxWhitespaceRun bytes or so bounds the scan.
//
// When there is no such place (more than chunkSize bytes without a space
// after a non-space character or a line break) the cut falls between two
// runes and the count may be off by a token there.
func nextPiece(text string) (head, rest string) {
	lastCut := 0
	prevSpace := true // no cut at 0
	for i := 0; i < len(text); {
		if i >= chunkSize {
			if lastCut > 0 {
				return text[:lastCut], text[lastCut:]
			}
			return text[:i], text[i:]
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		if !unicode.IsSpace(r) {
			prevSpace = false
			i += size
			continue
		}
		run := whitespaceRunLen(text[i:], maxWhitespaceRun+1)
		if run > maxWhitespaceRun {
			cut, end := runCut(text[i:])
			if cut > 0 {
				return text[:i+cut], text[i+cut:]
			}
			run = end
		}
		if r == ' ' && !prevSpace {
			lastCut = i
		}
		prevSpace = true
		i += run
		if c := text[i-1]; (c == '\n' || c == '\r') && i < len(text) && text[i] != '/' {
			lastCut = i
		}
	}
	return text, ""
}

// runCut chooses where to cut s, which starts with a whitespace run longer
// than maxWhitespaceRun: after the last line break group that ends within the
// first maxWhitespaceRun bytes, else after the first one that ends later
// (never before a '/', which may belong with the line breaks), else
// (the run has no line break, which tokenizes in linear time) nowhere: cut is
// 0 and end is the length of the run. A run longer than chunkSize without a
// line break is cut at a rune boundary near chunkSize.
func runCut(s string) (cut, end int) {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsSpace(r) {
			return cut, i
		}
		i += size
		if (r == '\n' || r == '\r') && (i == len(s) || (s[i] != '\n' && s[i] != '\r' && s[i] != '/')) {
			// i ends a maximal group of line breaks (not followed by '/').
			if i > maxWhitespaceRun {
				if cut == 0 {
					cut = i
				}
				return cut, i
			}
			cut = i
		}
		if i >= chunkSize {
			if cut == 0 {
				cut = i
			}
			return cut, i
		}
	}
	return cut, len(s)
}

// whitespaceRunLen returns the length in bytes of the whitespace that s starts
// with, or a number greater than limit if that is longer than limit.
func whitespaceRunLen(s string, limit int) int {
	for i, r := range s {
		if i > limit {
			return i
		}
		if !unicode.IsSpace(r) {
			return i
		}
	}
	return len(s)
}

func hasLongWhitespaceRun(s string) bool {
	run := 0
	for _, r := range s {
		if !unicode.IsSpace(r) {
			run = 0
			continue
		}
		run += utf8.RuneLen(r)
		if run > maxWhitespaceRun {
			return true
		}
	}
	return false
}

func isAllSpace(s string) bool {
	return whitespaceRunLen(s, len(s)) == len(s)
}

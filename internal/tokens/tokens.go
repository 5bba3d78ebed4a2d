package tokens

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"sync"
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

// Counter counts tokens. It keeps one encoder per encoding, built on first
// use. The zero value is not usable; call NewCounter. A Counter is safe for
// concurrent use.
type Counter struct {
	o200k  lazyEncoder
	cl100k lazyEncoder
}

type lazyEncoder struct {
	enc  tokenizer.Encoding
	once sync.Once
	e    *encoder
}

func (c *Counter) get(l *lazyEncoder) *encoder {
	l.once.Do(func() {
		e, err := newEncoder(l.enc)
		if err != nil {
			// Only reachable if the tokenizer stopped shipping an encoding
			// this package names as a constant: a build defect, not input.
			panic("tokens: " + err.Error())
		}
		l.e = e
	})
	return l.e
}

// NewCounter returns a Counter. It does no work until the first count: the
// first Counter of the process to use an encoding loads the tokenizer's
// vocabulary and builds the rank table (about 100 ms and 15 MB), which later
// Counters share.
func NewCounter() *Counter {
	return &Counter{
		o200k:  lazyEncoder{enc: tokenizer.O200kBase},
		cl100k: lazyEncoder{enc: tokenizer.Cl100kBase},
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

func (c *Counter) encoder(model string) *encoder {
	if EncodingFor(model) == tokenizer.Cl100kBase {
		return c.get(&c.cl100k)
	}
	return c.get(&c.o200k)
}

// Count returns the number of tokens in text under model's encoding: the
// tokenizer's count, exactly, for any text without a single piece (a word,
// a whitespace run) longer than 16 KB; see the package documentation.
func (c *Counter) Count(model, text string) int {
	if text == "" {
		return 0
	}
	return c.encoder(model).count(text)
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
//
// The texts of every message but the last are looked up in, and kept in, a
// cache of whole texts (see textCache): those are what clients resend (the
// system prompt, the conversation so far), while the last message is the
// new turn, rarely seen before, which would only push them out.
func (c *Counter) CountChat(model string, messages []openai.Message) int {
	e := c.encoder(model)
	count := e.count
	n := tokensForReply
	for i, m := range messages {
		n += tokensPerMessage + count(m.Role)
		content := count
		if i < len(messages)-1 {
			content = func(text string) int { return e.texts.count(e, text) }
		}
		if m.Text != nil {
			// Decoded once by openai.ParseChat.
			for _, s := range m.Text.Parts {
				n += content(s)
			}
		} else {
			for _, s := range contentTexts(m.Content) {
				n += content(s)
			}
		}
		if m.Name != "" {
			n += tokensPerName + count(m.Name)
		}
	}
	return n
}

// ChatBound returns an upper bound of CountChat's count of messages, under
// any model's encoding, from byte lengths alone (a pass over each text to
// check its UTF-8, no counting): every token of valid UTF-8 is at least one
// byte of it, and the tokenizer reads each byte of invalid UTF-8 as U+FFFD,
// at most three tokens. A content that CountChat decodes (Text nil) is
// bounded by its raw JSON, which no decoding makes longer but by invalid
// bytes. For a caller that reserves at once and counts later.
func ChatBound(messages []openai.Message) int {
	n := tokensForReply
	for _, m := range messages {
		n += tokensPerMessage + textBound(m.Role)
		if m.Text != nil {
			for _, s := range m.Text.Parts {
				n += textBound(s)
			}
		} else if len(m.Content) > 0 {
			if utf8.Valid(m.Content) {
				n += len(m.Content)
			} else {
				n += 3 * len(m.Content)
			}
		}
		if m.Name != "" {
			n += tokensPerName + textBound(m.Name)
		}
	}
	return n
}

// TextBound is an upper bound of Count(model, text) under any model's
// encoding, from its length alone (see ChatBound).
func TextBound(text string) int { return textBound(text) }

// textBound is the most tokens text can be (see ChatBound).
func textBound(text string) int {
	if utf8.ValidString(text) {
		return len(text)
	}
	return 3 * len(text)
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

// Warm builds the shared tables of the encodings models use (each model
// named once is enough) and returns those encodings, in the order first
// named. A node calls it in the background at start: otherwise its first
// requests wait on the first count's build, about 100 ms per encoding and
// several times that on a busy machine, all of them at once.
func Warm(models ...string) []tokenizer.Encoding {
	var done []tokenizer.Encoding
	for _, m := range models {
		enc := EncodingFor(m)
		if slices.Contains(done, enc) {
			continue
		}
		if _, err := newEncoder(enc); err != nil {
			continue // a build defect; the first count reports it
		}
		done = append(done, enc)
	}
	return done
}

package node

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/llmgate/llmgate/internal/openai"
)

// readChat reads what the settle and store stages need of a whole
// chat.completion (or embeddings list) body known to be valid JSON: its id,
// usage, whether it may be stored and its text. It is what decoding the body
// into a completion (and its id) gives, read in one pass without building
// the choices' messages when they are not needed: the common answer (a
// top-level object, plain strings, integer counts, each field once) is read
// by a scanner; any other (a duplicate or escaped key, a value of an
// unexpected type, a count that is not a plain integer) falls back to
// encoding/json, so that the result is encoding/json's in every case
// (FuzzReadChatMatchesDecoding checks it).
func readChat(body []byte) (id string, u *usage, storable bool, text string) {
	if a, ok := scanChat(body); ok {
		return a.id, a.usage, a.cacheable(body), a.text
	}
	var c completion
	if json.Unmarshal(body, &c) != nil {
		var head struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(body, &head)
		return head.ID, nil, false, ""
	}
	return c.ID, c.Usage, c.cacheable(body), c.text()
}

// scannedChat is what scanChat read.
type scannedChat struct {
	id      string
	usage   *usage
	choices int
	// finished: every choice has a finish reason the cache accepts.
	finished bool
	text     string
}

func (a *scannedChat) cacheable(body []byte) bool {
	return a.choices > 0 && a.finished && !contentFiltered(body)
}

// answerScanner walks a JSON answer and validates it as it goes, as
// json.Valid does: every byte it moves past was checked (values it does
// not read by openai.SkipValue), so a reader it gets to the end of has read
// valid JSON, in one pass.
type answerScanner struct {
	b     []byte
	i     int
	depth int // the arrays and objects open at s.i
}

func (s *answerScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte (0 at the end).
func (s *answerScanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// end reports whether only whitespace is left.
func (s *answerScanner) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// rawString returns the bytes between the quotes of the string at s.i and
// whether it has an escape; s.i moves past it. ok is false when there is
// no valid string at s.i.
func (s *answerScanner) rawString() (raw []byte, escaped, ok bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false, false
	}
	end, escaped, ok := openai.ScanString(s.b, s.i)
	if !ok {
		return nil, false, false
	}
	raw = s.b[s.i+1 : end]
	s.i = end + 1
	return raw, escaped, true
}

// skip moves past the valid value at s.i; false if it is not one.
func (s *answerScanner) skip() bool {
	end, ok := openai.SkipValue(s.b, s.i, s.depth)
	s.i = end
	return ok
}

// open enters the array or object at s.i.
func (s *answerScanner) open() {
	s.i++
	s.depth++
}

// close leaves the array or object whose closing byte is at s.i.
func (s *answerScanner) close() {
	s.i++
	s.depth--
}

// isNull consumes a null at s.i.
func (s *answerScanner) isNull() bool {
	if bytes.HasPrefix(s.b[s.i:], []byte("null")) {
		s.i += 4
		return true
	}
	return false
}

// nullOr reports whether the next value opens with open (present) and
// whether it is either that or null (ok); a null is consumed.
func (s *answerScanner) nullOr(open byte) (present, ok bool) {
	if s.isNull() {
		return false, true
	}
	present = s.peek() == open
	return present, present
}

// object calls field for each member of the object at s.i, with its key's
// raw bytes; false if a key has an escape or field says so.
func (s *answerScanner) object(field func(key []byte) bool) bool {
	s.open() // '{'
	if s.peek() == '}' {
		s.close()
		return true
	}
	for {
		s.ws()
		key, escaped, ok := s.rawString()
		if !ok || escaped || !ascii(key) {
			// An escaped or non-ASCII key could spell a field ("ſ"
			// folds to "s"): encoding/json decides.
			return false
		}
		if s.peek() != ':' {
			return false
		}
		s.i++
		s.ws()
		if !field(key) {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.close()
			return true
		default:
			return false
		}
	}
}

// str reads the string (or null: "") at s.i as encoding/json decodes it.
func (s *answerScanner) str(into *string) bool {
	switch {
	case s.isNull():
		return true
	case s.peek() != '"':
		return false
	}
	start := s.i
	raw, escaped, ok := s.rawString()
	if !ok {
		return false
	}
	if !escaped && utf8.Valid(raw) {
		*into = string(raw)
		return true
	}
	return decodeString(s.b[start:s.i], into)
}

// decodeString decodes the JSON string q (quotes included) into *into as
// encoding/json does; into does not escape, so a reader's result can stay
// on its stack.
func decodeString(q []byte, into *string) bool {
	var v string
	if json.Unmarshal(q, &v) != nil {
		return false
	}
	*into = v
	return true
}

// int reads the plain integer (or null: unchanged) at s.i; a fraction or
// exponent is left to encoding/json.
func (s *answerScanner) int(into *int64) bool {
	if s.isNull() {
		return true
	}
	if s.i >= len(s.b) || s.b[s.i] != '-' && (s.b[s.i] < '0' || s.b[s.i] > '9') {
		return false
	}
	start := s.i
	if !s.skip() {
		return false
	}
	lit := s.b[start:s.i]
	if bytes.ContainsAny(lit, ".eE") {
		return false
	}
	n, err := strconv.ParseInt(string(lit), 10, 64)
	if err != nil {
		return false
	}
	*into = n
	return true
}

// seen guards each field against a second occurrence, which encoding/json
// merges in ways not worth copying.
type seen uint8

func (f *seen) first(bit seen) bool {
	if *f&bit != 0 {
		return false
	}
	*f |= bit
	return true
}

// keyIs reports whether key, plain ASCII (object hands any other key to
// encoding/json), names the field name (lower-case ASCII) as encoding/json
// matches keys: case-insensitively, and so only a key of the same length.
func keyIs(key []byte, name string) bool {
	return len(key) == len(name) && (string(key) == name || bytes.EqualFold(key, []byte(name)))
}

// ascii reports whether b is plain ASCII, eight bytes at a time.
func ascii(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// scanChat reads body; ok is false when encoding/json must decide.
func scanChat(body []byte) (a scannedChat, ok bool) {
	s := answerScanner{b: body}
	if s.peek() != '{' {
		return a, false
	}
	var text []byte
	var plainText string // the only content, when there is one: not copied again
	contents := 0
	a.finished = true
	var top seen
	ok = s.object(func(key []byte) bool {
		switch {
		case keyIs(key, "id"):
			return top.first(1) && s.str(&a.id)
		case keyIs(key, "usage"):
			if !top.first(2) {
				return false
			}
			if present, ok := s.nullOr('{'); !present {
				return ok
			}
			a.usage = &usage{}
			return s.usage(a.usage)
		case keyIs(key, "choices"):
			if !top.first(4) {
				return false
			}
			if present, ok := s.nullOr('['); !present {
				return ok
			}
			s.open()
			if s.peek() == ']' {
				s.close()
				return true
			}
			for {
				a.choices++
				var reason, content *string
				if !s.isNull() {
					if s.peek() != '{' || !s.choice(&reason, &content) {
						return false
					}
				}
				if reason == nil || !finishedNormally(*reason) {
					a.finished = false
				}
				if content != nil {
					if contents++; contents == 1 {
						plainText = *content
					} else {
						if contents == 2 {
							text = append(text, plainText...)
						}
						text = append(text, *content...)
					}
				}
				switch s.peek() {
				case ',':
					s.i++
					s.ws()
				case ']':
					s.close()
					return true
				default:
					return false
				}
			}
		}
		return s.skip()
	})
	if !ok || !s.end() {
		return a, false
	}
	if contents > 1 {
		a.text = string(text)
	} else {
		a.text = plainText
	}
	return a, true
}

func finishedNormally(reason string) bool {
	switch reason {
	case "stop", "length", "tool_calls", "function_call":
		return true
	}
	return false // content_filter, or something this gateway does not know
}

// usage reads a usage object at s.i.
func (s *answerScanner) usage(u *usage) bool {
	var f seen
	return s.object(func(key []byte) bool {
		switch {
		case keyIs(key, "prompt_tokens"):
			return f.first(1) && s.int(&u.Prompt)
		case keyIs(key, "completion_tokens"):
			return f.first(2) && s.int(&u.Completion)
		case keyIs(key, "total_tokens"):
			return f.first(4) && s.int(&u.Total)
		case keyIs(key, "prompt_tokens_details"):
			if !f.first(8) {
				return false
			}
			if present, ok := s.nullOr('{'); !present {
				return ok
			}
			u.Details = &struct {
				Cached int64 `json:"cached_tokens"`
			}{}
			var g seen
			return s.object(func(key []byte) bool {
				if keyIs(key, "cached_tokens") {
					return g.first(1) && s.int(&u.Details.Cached)
				}
				return s.skip()
			})
		}
		return s.skip()
	})
}

// choice reads one choice object at s.i: its finish reason and message
// content (nil when absent or null).
func (s *answerScanner) choice(reason, content **string) bool {
	var f seen
	return s.object(func(key []byte) bool {
		switch {
		case keyIs(key, "finish_reason"):
			if !f.first(1) {
				return false
			}
			if s.isNull() {
				return true
			}
			var r string
			if !s.str(&r) {
				return false
			}
			*reason = &r
			return true
		case keyIs(key, "message"):
			if !f.first(2) {
				return false
			}
			if present, ok := s.nullOr('{'); !present {
				return ok
			}
			var g seen
			return s.object(func(key []byte) bool {
				if !keyIs(key, "content") {
					return s.skip()
				}
				if !g.first(1) {
					return false
				}
				if s.isNull() {
					return true
				}
				var c string
				if !s.str(&c) {
					return false
				}
				*content = &c
				return true
			})
		}
		return s.skip()
	})
}

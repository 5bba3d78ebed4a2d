package openai

import "bytes"

// PromptFloor is what one pass over a raw request body says about its
// prompt without decoding it: a lower bound on the text the gateway counts
// as prompt tokens, so that a body whose text alone cannot fit a limit is
// refused before the full decode (megabytes of JSON cost tens of
// milliseconds to decode; this pass costs about one memchr over them).
type PromptFloor struct {
	// TextBytes is at most the decoded length, in bytes, of the text fields
	// the gateway tokenizes for this request (see ScanPromptFloor).
	TextBytes int64
	// Tokens counts the pre-tokenized inputs (an embeddings request's
	// integer arrays), one token per number.
	Tokens int64
	// Model is the top-level "model" when it is a string without escapes,
	// else "": for naming the route of a refusal, never for routing.
	Model string
}

// ScanPromptFloor bounds from below the prompt text of body, a request of
// operation op, in one pass over the raw bytes. It never decodes a string
// and never allocates.
//
// Only text the token count of a successfully parsed request covers is
// added, and only by a lower bound of its decoded length (an escape
// sequence counts one byte): a chat message's string content and its parts
// of type "text"; an embeddings input's strings and numbers; a Responses
// input's string, the text parts and strings of its message items, the
// arguments of function calls and the outputs of their results, and the
// instructions when the input is a plain string or absent. Keys must be
// spelled exactly (a body with a case variant or a repeated key is refused
// by the parse anyway). Images, audio and files (base64 data) are never
// counted: they are not text parts.
//
// A body the pass cannot follow (not a JSON object, a string that does not
// end) yields the zero PromptFloor: the full parse then answers it.
func ScanPromptFloor(op Operation, body []byte) PromptFloor {
	s := floorScanner{b: body}
	var f PromptFloor
	model := func() {
		if s.peek() != '"' {
			s.skip()
			return
		}
		if raw := s.rawStr(); bytes.IndexByte(raw, '\\') < 0 {
			f.Model = string(raw)
		}
	}
	switch op {
	case OpChat:
		s.object(func(key []byte) {
			switch string(key) {
			case "messages":
				s.array(func() { s.chatMessage(&f) })
			case "model":
				model()
			default:
				s.skip()
			}
		})
	case OpEmbeddings:
		s.object(func(key []byte) {
			switch string(key) {
			case "input":
				s.embeddingsInput(&f)
			case "model":
				model()
			default:
				s.skip()
			}
		})
	case OpResponses:
		var instructions int64
		input := byte(0) // the first byte of the input value; 0 when absent
		s.object(func(key []byte) {
			switch string(key) {
			case "input":
				input = s.peek()
				s.responsesInput(&f)
			case "instructions":
				if s.peek() == '"' {
					instructions += s.str()
					return
				}
				s.skip()
			case "model":
				model()
			default:
				s.skip()
			}
		})
		// Instructions are counted (as a system message) only when every
		// input item is text, which only a string or absent input shows here.
		if input == 0 || input == '"' || input == 'n' {
			f.TextBytes += instructions
		}
	}
	if s.bad {
		return PromptFloor{}
	}
	return f
}

// chatMessage reads one element of messages.
func (s *floorScanner) chatMessage(f *PromptFloor) {
	if s.peek() != '{' {
		s.skip()
		return
	}
	s.object(func(key []byte) {
		if string(key) == "content" {
			f.TextBytes += s.textContent(isChatText)
			return
		}
		s.skip()
	})
}

func isChatText(typ []byte) bool { return string(typ) == "text" }

func isResponsesText(typ []byte) bool {
	switch string(typ) {
	case "input_text", "output_text", "text":
		return true
	}
	return false
}

// textContent reads a content: a string, or an array of parts of which
// those whose type isText accepts count their "text" string.
func (s *floorScanner) textContent(isText func([]byte) bool) int64 {
	switch s.peek() {
	case '"':
		return s.str()
	case '[':
		var n int64
		s.array(func() {
			if s.peek() != '{' {
				s.skip()
				return
			}
			var typ []byte
			var text int64
			s.object(func(key []byte) {
				switch {
				case string(key) == "type" && s.peek() == '"':
					typ = s.rawStr()
				case string(key) == "text" && s.peek() == '"':
					text = s.str()
				default:
					s.skip()
				}
			})
			if isText(typ) {
				n += text
			}
		})
		return n
	}
	s.skip()
	return 0
}

// embeddingsInput reads an embeddings input: a string, an array of strings,
// of integers or of integer arrays.
func (s *floorScanner) embeddingsInput(f *PromptFloor) {
	switch s.peek() {
	case '"':
		f.TextBytes += s.str()
	case '[':
		s.array(func() {
			switch c := s.peek(); {
			case c == '"':
				f.TextBytes += s.str()
			case c == '-' || c >= '0' && c <= '9':
				s.skip()
				f.Tokens++
			case c == '[':
				s.array(func() {
					if c := s.peek(); c == '-' || c >= '0' && c <= '9' {
						f.Tokens++
					}
					s.skip()
				})
			default:
				s.skip()
			}
		})
	default:
		s.skip()
	}
}

// responsesInput reads a Responses input: a string, or an array of items
// of which message items count their content, function calls their
// arguments and their results their output. Other items count nothing.
func (s *floorScanner) responsesInput(f *PromptFloor) {
	switch s.peek() {
	case '"':
		f.TextBytes += s.str()
	case '[':
		s.array(func() {
			if s.peek() != '{' {
				s.skip()
				return
			}
			var typ []byte
			typed := false
			var content, output, arguments int64
			s.object(func(key []byte) {
				switch string(key) {
				case "type":
					typed = true
					if s.peek() == '"' {
						typ = s.rawStr()
						return
					}
					s.skip()
				case "content":
					content = s.textContent(isResponsesText)
				case "output":
					output = s.textContent(isResponsesText)
				case "arguments":
					if s.peek() == '"' {
						arguments = s.str()
						return
					}
					s.skip()
				default:
					s.skip()
				}
			})
			switch {
			case !typed || string(typ) == "" || string(typ) == "message":
				f.TextBytes += content
			case string(typ) == "function_call":
				f.TextBytes += arguments
			case string(typ) == "function_call_output":
				f.TextBytes += output
			}
		})
	default:
		s.skip()
	}
}

// floorScanner walks a JSON document tolerantly: it follows the structure
// it is asked for and skips the rest, and sets bad (and stops) where the
// bytes cannot be followed. It does not validate: the full parse does.
type floorScanner struct {
	b   []byte
	i   int
	bad bool
}

// peek skips white space and returns the next byte, 0 at the end or once bad.
func (s *floorScanner) peek() byte {
	for s.i < len(s.b) && !s.bad {
		switch c := s.b[s.i]; c {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return c
		}
	}
	return 0
}

// object reads an object at s.i, calling member with each key (its raw
// bytes, escapes not decoded) with s.i at the value, which member consumes.
func (s *floorScanner) object(member func(key []byte)) {
	if s.peek() != '{' {
		s.bad = true
		return
	}
	s.i++
	for !s.bad {
		switch s.peek() {
		case '}':
			s.i++
			return
		case ',':
			s.i++
			continue
		case '"':
		default:
			s.bad = true
			return
		}
		key := s.rawStr()
		if s.peek() != ':' {
			s.bad = true
			return
		}
		s.i++
		member(key)
	}
}

// array reads an array at s.i, calling elem with s.i at each element,
// which elem consumes.
func (s *floorScanner) array(elem func()) {
	if s.peek() != '[' {
		s.bad = true
		return
	}
	s.i++
	for !s.bad {
		switch s.peek() {
		case ']':
			s.i++
			return
		case ',':
			s.i++
			continue
		case 0:
			s.bad = true
			return
		}
		start := s.i
		elem()
		if s.i == start && !s.bad {
			s.bad = true // an element that does not move: not JSON
		}
	}
}

// str reads a string at s.i and returns a lower bound on its decoded
// length: its bytes, each escape sequence counting one.
func (s *floorScanner) str() int64 {
	_, n := s.scanStr()
	return n
}

// rawStr reads a string at s.i and returns its raw contents.
func (s *floorScanner) rawStr() []byte {
	raw, _ := s.scanStr()
	return raw
}

func (s *floorScanner) scanStr() (raw []byte, n int64) {
	if s.peek() != '"' {
		s.bad = true
		return nil, 0
	}
	s.i++
	start := s.i
	for {
		q := bytes.IndexByte(s.b[s.i:], '"')
		if q < 0 {
			s.bad = true
			return nil, 0
		}
		q += s.i
		// The escapes before the quote; one of them may escape the quote itself.
		for s.i < q {
			e := bytes.IndexByte(s.b[s.i:q], '\\')
			if e < 0 {
				n += int64(q - s.i)
				s.i = q
				break
			}
			e += s.i
			n += int64(e-s.i) + 1
			if e+1 < len(s.b) && s.b[e+1] == 'u' {
				s.i = e + 6 // \uXXXX
			} else {
				s.i = e + 2
			}
		}
		if s.i > len(s.b) {
			s.bad = true
			return nil, 0
		}
		if s.i == q {
			s.i++
			return s.b[start:q], n
		}
		// The quote was escaped: the string goes on.
	}
}

// skip reads one value of any kind at s.i.
func (s *floorScanner) skip() {
	depth := 0
	for !s.bad {
		switch c := s.peek(); c {
		case 0:
			s.bad = true
			return
		case '"':
			s.scanStr()
		case '{', '[':
			depth++
			s.i++
		case '}', ']':
			if depth == 0 {
				return // the end of the enclosing value: nothing to skip
			}
			depth--
			s.i++
		case ',', ':':
			if depth == 0 {
				return
			}
			s.i++
		default: // number, true, false, null
			s.scalar()
		}
		if depth == 0 {
			return
		}
	}
}

// scalar reads a number or literal at s.i, up to the next delimiter.
func (s *floorScanner) scalar() {
	for ; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case ',', '}', ']', ':', '"', '{', '[', ' ', '\t', '\n', '\r':
			return
		}
	}
}

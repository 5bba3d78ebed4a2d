package openai

import (
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"strconv"
)

// A chat request is read on every call, so ParseChat first tries one pass
// over the body (scanChat) that validates the JSON, decodes the fields the
// gateway reads and applies checkKeys' rules together. It takes only the
// common, unambiguous shapes: anything else (a syntax error, a wrong type, a
// null where a value is expected, an escaped or non-ASCII key, a key that is
// a case variant or a repeat, very deep or very wide objects) makes it give
// up, and the body is then read by encoding/json and checkKeys as before,
// which produce the errors. So a body it accepts decodes exactly as
// encoding/json decodes it (FuzzParseChatMatchesDecoding checks that).

// maxScanDepth is the deepest nesting scanChat follows; deeper bodies are
// left to encoding/json, whose own limit (10,000) then applies.
const maxScanDepth = 512

// maxScanKeys is the most keys of one object whose repeats scanChat
// tracks; wider objects are left to checkKeys.
const maxScanKeys = 32

// strByte marks the bytes a JSON string's scan must stop at: the quote,
// the backslash, and control characters (invalid unescaped).
var strByte = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// jsonScanner reads JSON text strictly (RFC 8259, what encoding/json accepts).
type jsonScanner struct {
	b []byte
	i int
	// plain: only validate (Valid), without scanChat's rules for keys
	// and with encoding/json's nesting limit.
	plain bool
}

// maxNestingDepth is encoding/json's limit on nested arrays and objects.
const maxNestingDepth = 10000

// Valid reports whether b is valid JSON, exactly as json.Valid does
// (FuzzValidMatchesDecoding checks it), in one pass without a state
// machine: several times faster, for the gateway's hot paths.
func Valid(b []byte) bool {
	s := &jsonScanner{b: b, plain: true}
	return s.next() != 0 && s.value(nil, 0) && s.end()
}

// SkipValue returns the index just past the JSON value at b[i] (after any
// whitespace), read as json.Valid reads it inside depth open containers;
// ok is false when the text there is not a valid value. With ScanString it
// lets a reader that extracts a few fields validate the whole body in the
// same pass (node's answer readers).
func SkipValue(b []byte, i, depth int) (end int, ok bool) {
	s := jsonScanner{b: b, i: i, plain: true}
	if s.next() == 0 || !s.value(nil, depth) {
		return 0, false
	}
	return s.i, true
}

// ScanString reads the JSON string whose opening quote is b[i], as
// json.Valid does: end is the index of its closing quote, escaped whether
// it holds escapes; ok is false when it is not a valid string.
func ScanString(b []byte, i int) (end int, escaped, ok bool) {
	s := jsonScanner{b: b, i: i}
	_, end, escaped, ok = s.str()
	return end, escaped, ok
}

// tooDeep reports whether a container at depth must not be followed.
func (s *jsonScanner) tooDeep(depth int) bool {
	if s.plain {
		return depth > maxNestingDepth
	}
	return depth > maxScanDepth
}

func (s *jsonScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next skips whitespace and returns the next byte, 0 at the end.
func (s *jsonScanner) next() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// str reads a string at its opening quote and returns the span of its
// contents and whether they hold escapes; ok is false for invalid text.
func (s *jsonScanner) str() (start, end int, escaped, ok bool) {
	s.i++ // '"'
	start = s.i
	for s.i < len(s.b) {
		if s.i+8 <= len(s.b) {
			// Eight bytes at a time, to the first that is special.
			m := specialBytes(binary.LittleEndian.Uint64(s.b[s.i:]))
			if m == 0 {
				s.i += 8
				continue
			}
			s.i += bits.TrailingZeros64(m) / 8
		}
		c := s.b[s.i]
		if !strByte[c] {
			s.i++
			continue
		}
		switch {
		case c == '"':
			end = s.i
			s.i++
			return start, end, escaped, true
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.b) {
				return 0, 0, false, false
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					return 0, 0, false, false
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !isHex(h) {
						return 0, 0, false, false
					}
				}
				s.i += 6
			default:
				return 0, 0, false, false
			}
		default: // a control character
			return 0, 0, false, false
		}
	}
	return 0, 0, false, false
}

// specialBytes marks (with its top bit) each byte of w, eight bytes of a
// string read little-endian, that strByte marks: a control character, a
// quote or a backslash. The lowest mark is exact (a byte flagged above it
// may be a borrow's echo), which is all str uses.
func specialBytes(w uint64) uint64 {
	const ones, tops = 0x0101010101010101, 0x8080808080808080
	q := w ^ (ones * '"')
	b := w ^ (ones * '\\')
	return ((w-ones*0x20)&^w | (q-ones)&^q | (b-ones)&^b) & tops
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number reads a number and returns its literal; ok is false if there is none.
func (s *jsonScanner) number() (lit []byte, ok bool) {
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case s.i < len(s.b) && '1' <= s.b[s.i] && s.b[s.i] <= '9':
		for s.i++; s.i < len(s.b) && isDigit(s.b[s.i]); s.i++ {
		}
	default:
		return nil, false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.i >= len(s.b) || !isDigit(s.b[s.i]) {
			return nil, false
		}
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.i >= len(s.b) || !isDigit(s.b[s.i]) {
			return nil, false
		}
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
		}
	}
	return s.b[start:s.i], true
}

// literal reads true, false or null.
func (s *jsonScanner) literal(word string) bool {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

// value reads one value (at s.i, whitespace skipped) whose shape is sh
// (nil: none), checking checkKeys' rules in its objects. ok is false when
// the text is invalid or scanChat must leave it to the decoder.
func (s *jsonScanner) value(sh *shape, depth int) bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; c {
	case '{':
		return s.object(sh, depth+1, nil)
	case '[':
		if s.plain {
			return s.plainArray(depth + 1)
		}
		var elem *shape
		if sh != nil {
			elem = sh.elem
		}
		return s.array(depth+1, func() bool { return s.value(elem, depth+1) })
	case '"':
		_, _, _, ok := s.str()
		return ok
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	default:
		_, ok := s.number()
		return ok
	}
}

// array reads an array at its '[', each element by elem (at the element's
// first byte).
func (s *jsonScanner) array(depth int, elem func() bool) bool {
	if s.tooDeep(depth) {
		return false
	}
	s.i++ // '['
	if s.next() == ']' {
		s.i++
		return true
	}
	for {
		if s.next() == 0 || !elem() {
			return false
		}
		switch s.next() {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// plainArray is array for Valid, without a closure per array.
func (s *jsonScanner) plainArray(depth int) bool {
	if depth > maxNestingDepth {
		return false
	}
	s.i++ // '['
	if s.next() == ']' {
		s.i++
		return true
	}
	for {
		if s.next() == 0 || !s.value(nil, depth) {
			return false
		}
		switch s.next() {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// object reads an object at its '{'. Its keys must be plain ASCII, none
// repeated (in any case), and, where sh names fields, either one of them
// exactly or not one of them in another case. field, when set, reads the
// value of each key sh names (at the value's first byte); other values are
// read by value.
func (s *jsonScanner) object(sh *shape, depth int, field func(key []byte) bool) bool {
	if s.tooDeep(depth) {
		return false
	}
	s.i++ // '{'
	if s.next() == '}' {
		s.i++
		return true
	}
	var keys [maxScanKeys][2]int
	n := 0
	for {
		if s.next() != '"' {
			return false
		}
		start, end, escaped, ok := s.str()
		if s.plain {
			if !ok || s.next() != ':' {
				return false
			}
			s.i++
			if s.next() == 0 || !s.value(nil, depth) {
				return false
			}
			switch s.next() {
			case ',':
				s.i++
				continue
			case '}':
				s.i++
				return true
			}
			return false
		}
		if !ok || escaped || n == maxScanKeys {
			return false
		}
		key := s.b[start:end]
		for _, c := range key {
			if c >= 0x80 {
				return false
			}
		}
		for _, k := range keys[:n] {
			if asciiEqualFold(s.b[k[0]:k[1]], key) {
				return false
			}
		}
		keys[n] = [2]int{start, end}
		n++
		var child *shape
		known := false
		if sh != nil && sh.fields != nil {
			child, known = sh.fields[string(key)]
			if !known && isFoldedField(sh, key) {
				return false
			}
		}
		if s.next() != ':' {
			return false
		}
		s.i++
		if s.next() == 0 {
			return false
		}
		if known && field != nil {
			ok = field(key)
		} else {
			ok = s.value(child, depth)
		}
		if !ok {
			return false
		}
		switch s.next() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// isFoldedField reports whether ASCII key, not a field of sh, is one in
// another case (the field names are lower case).
func isFoldedField(sh *shape, key []byte) bool {
	var buf [32]byte
	if len(key) > len(buf) {
		return false // longer than any field name
	}
	lower := buf[:len(key)]
	for i, c := range key {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	_, ok := sh.fields[string(lower)]
	return ok
}

func asciiEqualFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// end reports whether only whitespace is left.
func (s *jsonScanner) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// raw returns the bytes of the value read since start, capped so that
// appending to them cannot write into the body.
func (s *jsonScanner) raw(start int) json.RawMessage {
	return s.b[start:s.i:s.i]
}

// stringValue reads a string value as encoding/json decodes it.
func (s *jsonScanner) stringValue() (string, bool) {
	if s.b[s.i] != '"' {
		return "", false
	}
	start, end, escaped, ok := s.str()
	if !ok {
		return "", false
	}
	if !escaped {
		return string(s.b[start:end]), true
	}
	return decodeJSONString(s.b[start-1 : end+1])
}

func (s *jsonScanner) boolValue() (bool, bool) {
	switch s.b[s.i] {
	case 't':
		return true, s.literal("true")
	case 'f':
		return false, s.literal("false")
	}
	return false, false
}

// intValue reads an integer as encoding/json decodes one into an int64: a
// null leaves p as it is; a fraction or exponent is left to the decoder.
func (s *jsonScanner) intValue(p **int64) bool {
	if s.b[s.i] == 'n' {
		return s.literal("null")
	}
	lit, ok := s.number()
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(string(lit), 10, 64)
	if err != nil {
		return false
	}
	*p = &n
	return true
}

func (s *jsonScanner) floatValue(p **float64) bool {
	if s.b[s.i] == 'n' {
		return s.literal("null")
	}
	lit, ok := s.number()
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return false
	}
	*p = &f
	return true
}

// scanChat decodes body as ParseChat's decoder and checkKeys would, in one
// pass, or returns false to leave it to them (see the comment at the top).
func scanChat(body []byte) (*ChatRequest, bool) {
	s := &jsonScanner{b: body}
	if s.next() != '{' {
		return nil, false
	}
	r := &ChatRequest{}
	ok := s.object(chatShape, 1, func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "model":
			r.Model, ok = s.stringValue()
		case "messages":
			ok = s.messages(r)
		case "stream":
			r.Stream, ok = s.boolValue()
		case "stream_options":
			ok = s.streamOptions(r)
		case "max_tokens":
			ok = s.intValue(&r.MaxTokens)
		case "max_completion_tokens":
			ok = s.intValue(&r.MaxCompletionTokens)
		case "n":
			ok = s.intValue(&r.N)
		case "temperature":
			ok = s.floatValue(&r.Temperature)
		case "tools", "response_format":
			start := s.i
			if ok = s.value(nil, 1); ok {
				if string(key) == "tools" {
					r.Tools = s.raw(start)
				} else {
					r.ResponseFormat = s.raw(start)
				}
			}
		}
		return ok
	})
	if !ok || !s.end() {
		return nil, false
	}
	return r, true
}

func (s *jsonScanner) messages(r *ChatRequest) bool {
	if s.b[s.i] != '[' {
		return false
	}
	msgs := make([]Message, 0, 4)
	ok := s.array(2, func() bool {
		if s.b[s.i] != '{' {
			return false
		}
		var m Message
		ok := s.object(messageShape, 3, func(key []byte) bool {
			switch string(key) {
			case "role":
				var ok bool
				m.Role, ok = s.stringValue()
				return ok
			case "name":
				var ok bool
				m.Name, ok = s.stringValue()
				return ok
			default: // "content"
				start := s.i
				if !s.value(messageShape.fields["content"], 3) {
					return false
				}
				m.Content = s.raw(start)
				return true
			}
		})
		msgs = append(msgs, m)
		return ok
	})
	r.Messages = msgs
	return ok
}

func (s *jsonScanner) streamOptions(r *ChatRequest) bool {
	switch s.b[s.i] {
	case 'n':
		return s.literal("null")
	case '{':
	default:
		return false
	}
	o := &StreamOptions{}
	ok := s.object(chatShape.fields["stream_options"], 2, func([]byte) bool {
		var ok bool
		o.IncludeUsage, ok = s.boolValue()
		return ok
	})
	r.StreamOptions = o
	return ok
}

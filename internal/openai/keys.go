package openai

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// One meaning for every byte: Go's decoder matches object keys to struct
// fields case-insensitively and lets a repeated key win over the earlier one,
// while the body goes upstream as the client wrote it, to servers that match
// keys exactly and may keep the first of two. {"stream":true,"STREAM":false}
// would then be a stream to the backend and not to the gateway. checkKeys
// refuses such bodies: a key repeated in any object, two keys of one object
// that differ only in case, and a key the gateway would read as one of its
// fields without it being spelled exactly so.

// shape lists, for an object the gateway decodes into a struct, the fields it
// reads and the shapes of those that are decoded further.
type shape struct {
	fields map[string]*shape // the exact (lower-case) json names; a nil value: not decoded further
	elem   *shape            // for an array: the shape of its elements
}

var (
	partShape    = &shape{fields: map[string]*shape{"type": nil, "text": nil}}
	messageShape = &shape{fields: map[string]*shape{"role": nil, "content": {elem: partShape}, "name": nil}}
	chatShape    = &shape{fields: map[string]*shape{
		"model": nil, "messages": {elem: messageShape}, "stream": nil,
		"stream_options": {fields: map[string]*shape{"include_usage": nil}},
		"max_tokens":     nil, "max_completion_tokens": nil, "n": nil, "temperature": nil,
		"tools": nil, "response_format": nil,
	}}
	embeddingsShape = &shape{fields: map[string]*shape{"model": nil, "input": nil}}
	itemShape       = &shape{fields: map[string]*shape{
		"type": nil, "role": nil, "content": {elem: partShape}, "output": nil, "arguments": nil, "name": nil,
	}}
	responsesShape = &shape{fields: map[string]*shape{
		"model": nil, "input": {elem: itemShape}, "instructions": nil, "tools": nil, "stream": nil,
		"max_output_tokens": nil, "temperature": nil, "previous_response_id": nil, "conversation": nil,
		"background": nil, "store": nil,
	}}
)

// maxCheckDepth matches encoding/json's own nesting limit: deeper bodies never get here.
const maxCheckDepth = 10000

// checkKeys walks body, which json.Unmarshal has accepted, and returns a 400
// naming the first ambiguous key.
func checkKeys(body []byte, sh *shape) *Error {
	s := keyScanner{b: body}
	if err := s.value(sh, 0); err != nil {
		return err.toError()
	}
	return nil
}

type keyError struct {
	path []string // innermost first
	msg  string
}

func (e *keyError) toError() *Error {
	var sb strings.Builder
	for i := len(e.path) - 1; i >= 0; i-- {
		p := e.path[i]
		if sb.Len() > 0 && !strings.HasPrefix(p, "[") {
			sb.WriteByte('.')
		}
		sb.WriteString(p)
	}
	param := sb.String()
	return BadRequest(param, "Ambiguous request body at '"+param+"': "+e.msg+" Send each parameter once, spelled exactly as documented.")
}

type keyScanner struct {
	b []byte
	i int
}

func (s *keyScanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value scans one JSON value starting at s.i.
func (s *keyScanner) value(sh *shape, depth int) *keyError {
	s.skipSpace()
	if s.i >= len(s.b) {
		return nil
	}
	if depth > maxCheckDepth {
		return &keyError{msg: "nested too deeply."}
	}
	switch s.b[s.i] {
	case '{':
		return s.object(sh, depth)
	case '[':
		s.i++
		var elem *shape
		if sh != nil {
			elem = sh.elem
		}
		for n := 0; ; n++ {
			s.skipSpace()
			if s.i >= len(s.b) {
				return nil
			}
			if s.b[s.i] == ']' {
				s.i++
				return nil
			}
			if s.b[s.i] == ',' {
				s.i++
			}
			if err := s.value(elem, depth+1); err != nil {
				err.path = append(err.path, "["+strconv.Itoa(n)+"]")
				return err
			}
		}
	case '"':
		s.str()
		return nil
	default: // number, true, false, null
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return nil
			}
			s.i++
		}
		return nil
	}
}

func (s *keyScanner) object(sh *shape, depth int) *keyError {
	s.i++ // '{'
	var seen keySet
	for {
		s.skipSpace()
		if s.i >= len(s.b) {
			return nil
		}
		switch s.b[s.i] {
		case '}':
			s.i++
			return nil
		case ',':
			s.i++
			continue
		}
		raw, escaped := s.str()
		key := raw
		if escaped {
			if json.Unmarshal([]byte(`"`+raw+`"`), &key) != nil {
				return &keyError{path: []string{raw}, msg: "a key is not a valid JSON string."}
			}
		}
		fold := foldKey(key)
		if prev, dup := seen.add(key, fold); dup {
			msg := "the key '" + key + "' appears more than once in one object."
			if prev != key {
				msg = "the keys '" + prev + "' and '" + key + "' differ only in case."
			}
			return &keyError{path: []string{key}, msg: msg}
		}
		var child *shape
		if sh != nil && sh.fields != nil {
			if c, known := sh.fields[key]; known {
				child = c
			} else if _, variant := sh.fields[fold]; variant {
				return &keyError{path: []string{key}, msg: "'" + key + "' is not '" + fold + "' (keys are case-sensitive)."}
			}
		}
		s.skipSpace()
		if s.i < len(s.b) && s.b[s.i] == ':' {
			s.i++
		}
		if err := s.value(child, depth+1); err != nil {
			err.path = append(err.path, key)
			return err
		}
	}
}

// str scans a string starting at its opening quote and returns its raw
// contents and whether they hold escapes.
func (s *keyScanner) str() (string, bool) {
	s.i++ // '"'
	start, escaped := s.i, false
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			escaped = true
			s.i += 2
			continue
		case '"':
			raw := string(s.b[start:s.i])
			s.i++
			return raw, escaped
		}
		s.i++
	}
	return string(s.b[start:]), escaped
}

// keySet holds an object's keys by their case fold.
type keySet struct {
	folds, keys []string
	big         map[string]string
}

// add records key and returns the earlier key with the same fold, if any.
func (k *keySet) add(key, fold string) (string, bool) {
	if k.big != nil {
		if prev, ok := k.big[fold]; ok {
			return prev, true
		}
		k.big[fold] = key
		return "", false
	}
	for i, f := range k.folds {
		if f == fold {
			return k.keys[i], true
		}
	}
	k.folds, k.keys = append(k.folds, fold), append(k.keys, key)
	if len(k.folds) > 16 { // many keys: a map keeps this linear
		k.big = make(map[string]string, 32)
		for i, f := range k.folds {
			k.big[f] = k.keys[i]
		}
	}
	return "", false
}

// foldKey maps every string to one representative of its class under
// Unicode simple case folding, the equivalence encoding/json matches field
// names by (bytes.EqualFold): each rune becomes the smallest of its orbit.
func foldKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	var sb strings.Builder
	sb.Grow(len(s))
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		if m < utf8.RuneSelf {
			m = unicode.ToLower(m)
		}
		sb.WriteRune(m)
	}
	return sb.String()
}

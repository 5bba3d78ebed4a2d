package index

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// maxDepth bounds the nesting CanonicalHash accepts.
const maxDepth = 256

// ignoredKey reports whether a top-level request key leaves the answer as it
// is (streaming is replayed from the stored answer; user is a label).
func ignoredKey(k string) bool {
	return k == "stream" || k == "stream_options" || k == "user"
}

// CanonicalHash is the exact tier's key: SHA-256 over sp's fields and the
// canonical form of the JSON request body. The canonical form sorts object
// keys, drops insignificant whitespace, re-escapes strings uniformly, keeps
// numbers as their literal text and array order as given, and drops the
// top-level keys "stream", "stream_options" and "user". Bodies that differ
// only in key order, whitespace or string escapes hash alike; any other
// difference (a value, a number's spelling, an array's order) does not.
// Invalid JSON is an error.
func CanonicalHash(sp Space, body []byte) ([32]byte, error) {
	canon, err := canonicalJSON(body)
	if err != nil {
		return [32]byte{}, err
	}
	// The canonical body is a fresh buffer: the Space goes in front of it in
	// a second one, and both through one digest.
	var buf [128]byte
	head := append(buf[:0], "llmgate/index/v1\x00"...)
	head = appendString(head, sp.Partition)
	head = appendString(head, sp.Route)
	head = appendString(head, sp.Shape)
	h := sha256.New()
	h.Write(head)
	h.Write(canon)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, nil
}

// canonicalJSON is the canonical form of body that CanonicalHash hashes.
// encoding/json validates; a byte-level walk then rewrites (its token API is
// an order of magnitude slower, and bodies carry base64 images).
func canonicalJSON(body []byte) ([]byte, error) {
	if !json.Valid(body) {
		return nil, errors.New("index: canonicalising request: invalid JSON")
	}
	p := canonParser{b: body}
	out, err := p.value(make([]byte, 0, len(body)), 0)
	if err != nil {
		return nil, fmt.Errorf("index: canonicalising request: %w", err)
	}
	if p.next() != 0 {
		return nil, errors.New("index: canonicalising request: data after the JSON value")
	}
	return out, nil
}

// canonParser walks JSON already known to be valid; it still checks what it
// relies on, so a bug is an error, never a panic.
type canonParser struct {
	b []byte
	i int
}

var errBadJSON = errors.New("malformed JSON")

// next returns the next non-space byte without consuming it (0 at the end).
func (p *canonParser) next() byte {
	for p.i < len(p.b) {
		switch c := p.b[p.i]; c {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return c
		}
	}
	return 0
}

func (p *canonParser) value(out []byte, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxDepth)
	}
	switch p.next() {
	case '{':
		return p.object(out, depth)
	case '[':
		return p.array(out, depth)
	case '"':
		return p.str(out)
	case 0:
		return nil, errBadJSON
	}
	// A number, true, false or null: kept as written.
	start := p.i
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ',', ']', '}', ' ', '\t', '\n', '\r':
			return append(out, p.b[start:p.i]...), nil
		}
		p.i++
	}
	return append(out, p.b[start:p.i]...), nil
}

func (p *canonParser) array(out []byte, depth int) ([]byte, error) {
	p.i++ // '['
	out = append(out, '[')
	if p.next() == ']' {
		p.i++
		return append(out, ']'), nil
	}
	for {
		var err error
		if out, err = p.value(out, depth+1); err != nil {
			return nil, err
		}
		c := p.next()
		p.i++
		switch c {
		case ',':
			out = append(out, ',')
		case ']':
			return append(out, ']'), nil
		default:
			return nil, errBadJSON
		}
	}
}

// object writes the object at p.i with members sorted by key (then by
// value, so that duplicate keys are deterministic too), dropping the
// ignored keys at the top level.
func (p *canonParser) object(out []byte, depth int) ([]byte, error) {
	p.i++ // '{'
	type member struct {
		name     string // the key's value: members sort by it, as encoding/json does
		key, val []byte // canonical encodings
	}
	var ms []member
	if p.next() == '}' {
		p.i++
		return append(out, "{}"...), nil
	}
	for {
		if p.next() != '"' {
			return nil, errBadJSON
		}
		key, err := p.str(nil)
		if err != nil {
			return nil, err
		}
		if p.next() != ':' {
			return nil, errBadJSON
		}
		p.i++
		val, err := p.value(nil, depth+1)
		if err != nil {
			return nil, err
		}
		name := string(key[1 : len(key)-1])
		if bytes.IndexByte(key, '\\') >= 0 {
			if err := json.Unmarshal(key, &name); err != nil {
				return nil, err
			}
		}
		if depth > 0 || !ignoredKey(name) {
			ms = append(ms, member{name, key, val})
		}
		c := p.next()
		p.i++
		if c == '}' {
			break
		}
		if c != ',' {
			return nil, errBadJSON
		}
	}
	slices.SortFunc(ms, func(a, b member) int {
		return cmp.Or(strings.Compare(a.name, b.name), bytes.Compare(a.val, b.val))
	})
	out = append(out, '{')
	for i, m := range ms {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, m.key...)
		out = append(out, ':')
		out = append(out, m.val...)
	}
	return append(out, '}'), nil
}

// str writes the string at p.i as encoding/json marshals its value:
// verbatim when that is already so, else decoded and re-encoded.
func (p *canonParser) str(out []byte) ([]byte, error) {
	start := p.i
	p.i++ // opening quote
	verbatim := true
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			raw := p.b[start:p.i]
			if verbatim {
				return append(out, raw...), nil
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, err
			}
			enc, err := json.Marshal(s)
			if err != nil {
				return nil, err
			}
			return append(out, enc...), nil
		case c == '\\':
			verbatim = false
			p.i += 2
		case c == '<' || c == '>' || c == '&':
			verbatim = false
			p.i++
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(p.b[p.i:])
			if (r == utf8.RuneError && n == 1) || r == '\u2028' || r == '\u2029' {
				verbatim = false // encoding/json replaces or escapes these
			}
			p.i += n
		default:
			p.i++
		}
	}
	return nil, errBadJSON
}

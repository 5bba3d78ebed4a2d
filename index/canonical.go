package index

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf16"
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
// keys (stably: duplicate keys keep their order, since which one a server
// reads depends on the order), drops insignificant whitespace, re-escapes
// strings uniformly (a lone surrogate escape and an invalid UTF-8 byte stay
// distinct from each other and from U+FFFD), keeps numbers as their literal
// text and array order as given, and drops the top-level keys "stream",
// "stream_options" and "user". Bodies that differ only in key order of
// distinct keys, whitespace or string escapes of the same characters hash
// alike; any other difference (a value, a number's spelling, an array's
// order, the order of duplicate keys) does not. Invalid JSON is an error.
func CanonicalHash(sp Space, body []byte) ([32]byte, error) {
	canon, err := canonicalJSON(body, nil, false)
	if err != nil {
		return [32]byte{}, err
	}
	return HashCanonical(sp, canon), nil
}

// Canonical is a JSON request body in the canonical form CanonicalHash
// hashes, with the canonical values of its top-level members: what a caller
// needs to key a request and to describe its shape from one pass over the
// body.
type Canonical struct {
	canon []byte
	// Members are the top-level members of an object body, sorted by name
	// (duplicates in the order given), without the keys CanonicalHash drops;
	// nil for any other body.
	Members []Member
}

// Member is one top-level member of a Canonical body.
type Member struct {
	Name  string // the key as encoding/json decodes it
	Value []byte // the value's canonical form
}

// Canonicalize reads body once into its canonical form (see CanonicalHash).
// Invalid JSON is an error.
func Canonicalize(body []byte) (Canonical, error) {
	return canonicalize(body, false)
}

// CanonicalizeValid is Canonicalize of a body its caller has already found
// to be valid JSON (json.Valid, or a decode by encoding/json or one that
// accepts what it accepts): it skips validating the body a second time,
// which cost about as much as the rest of canonicalising a chat request.
// For valid JSON its result is exactly Canonicalize's. Handed invalid JSON
// it returns an error or a canonical form of no meaning, never a panic.
func CanonicalizeValid(body []byte) (Canonical, error) {
	return canonicalize(body, true)
}

func canonicalize(body []byte, valid bool) (Canonical, error) {
	var c Canonical
	canon, err := canonicalJSON(body, &c.Members, valid)
	if err != nil {
		return Canonical{}, err
	}
	c.canon = canon
	return c, nil
}

// Hash is CanonicalHash(sp, body) of the body c was read from.
func (c *Canonical) Hash(sp Space) [32]byte { return HashCanonical(sp, c.canon) }

// HashCanonical is CanonicalHash for a body already in canonical form, such
// as one assembled from Members and AppendCanonicalString: SHA-256 over sp's
// fields and canon.
func HashCanonical(sp Space, canon []byte) [32]byte {
	// The canonical body is a buffer of its own: the Space goes in front of
	// it in a second one, and both through one digest.
	var buf [128]byte
	head := append(buf[:0], "llmgate/index/v2\x00"...)
	head = appendString(head, sp.Partition)
	head = appendString(head, sp.Route)
	head = appendString(head, sp.Shape)
	h := sha256.New()
	h.Write(head)
	h.Write(canon)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// AppendCanonicalString appends the canonical form of the JSON string that
// encoding/json marshals s to (an invalid UTF-8 byte becomes U+FFFD, as
// encoding/json writes it): what a value built in Go contributes to a
// canonical body.
func AppendCanonicalString(out []byte, s string) []byte {
	out = append(out, '"')
	for _, r := range s { // ranging turns an invalid byte into U+FFFD
		out = appendRune(out, r)
	}
	return append(out, '"')
}

// canonicalJSON is the canonical form of body that CanonicalHash hashes.
// encoding/json validates; a byte-level walk then rewrites (its token API is
// an order of magnitude slower, and bodies carry base64 images).
// With top, the top-level members of an object body are also kept there.
// With valid, the caller vouches that body is valid JSON, and the walk
// alone reads it.
func canonicalJSON(body []byte, top *[]Member, valid bool) ([]byte, error) {
	if !valid && !json.Valid(body) {
		return nil, errors.New("index: canonicalising request: invalid JSON")
	}
	p := canonParser{b: body, top: top}
	// An object is read, then written sorted, before it is moved into
	// place: twice the body's length is room for both.
	out, err := p.value(make([]byte, 0, 2*len(body)+16), 0)
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
	b   []byte
	i   int
	top *[]Member // nil, or where the top-level object's members go
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

// object writes the object at p.i with members sorted by key, duplicates in
// the order given, dropping the ignored keys at the top level.
//
// The members are read onto the end of out, in the order given, then
// written after them sorted, and moved down over them: one buffer for the
// whole body, where a buffer per key and per value cost a request's
// look-up some twenty allocations.
func (p *canonParser) object(out []byte, depth int) ([]byte, error) {
	p.i++ // '{'
	type member struct {
		name        []byte // the key's value: members sort by it, as encoding/json does
		ks, ke, ve  int    // the canonical key is out[ks:ke], the value out[ke+1:ve]
		nameDecoded bool   // name was unescaped (not a part of out)
	}
	if p.next() == '}' {
		p.i++
		if depth == 0 && p.top != nil {
			*p.top = []Member{}
		}
		return append(out, "{}"...), nil
	}
	mark := len(out)
	var buf [8]member
	ms := buf[:0]
	for {
		if p.next() != '"' {
			return nil, errBadJSON
		}
		ks := len(out)
		var err error
		if out, err = p.str(out); err != nil {
			return nil, err
		}
		ke := len(out)
		if p.next() != ':' {
			return nil, errBadJSON
		}
		p.i++
		out = append(out, ':')
		if out, err = p.value(out, depth+1); err != nil {
			return nil, err
		}
		// Members sort by name as encoding/json does; a name it cannot tell
		// apart (lone surrogates) keeps its place, and its canonical key
		// still differs. Bytes written to out are never moved before this
		// object is done, so name may point into it.
		key := out[ks:ke]
		m := member{name: key[1 : len(key)-1], ks: ks, ke: ke, ve: len(out)}
		if bytes.IndexByte(key, '\\') >= 0 || !utf8.Valid(key) {
			var name string
			if err := json.Unmarshal(key, &name); err != nil {
				return nil, err
			}
			m.name, m.nameDecoded = []byte(name), true
		}
		if depth > 0 || !ignoredKey(string(m.name)) {
			ms = append(ms, m)
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
	slices.SortStableFunc(ms, func(a, b member) int { return bytes.Compare(a.name, b.name) })
	if depth == 0 && p.top != nil {
		// The values are moved over below: the members keep a copy, one
		// buffer for all.
		n := 0
		for _, m := range ms {
			n += m.ve - m.ke - 1
		}
		vals := make([]byte, 0, n)
		*p.top = make([]Member, len(ms))
		for i, m := range ms {
			at := len(vals)
			vals = append(vals, out[m.ke+1:m.ve]...)
			(*p.top)[i] = Member{Name: string(m.name), Value: vals[at:len(vals):len(vals)]}
		}
	}
	end := len(out)
	out = append(out, '{')
	for i, m := range ms {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, out[m.ks:m.ve]...)
	}
	out = append(out, '}')
	n := copy(out[mark:], out[end:])
	return out[:mark+n], nil
}

// str writes the string at p.i in canonical form: verbatim when it has no
// escape and is valid UTF-8, else decoded and re-encoded by appendCanon.
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
			return appendCanon(out, raw[1:len(raw)-1])
		case c == '\\':
			verbatim = false
			p.i += 2
		case c == '<' || c == '>' || c == '&':
			verbatim = false
			p.i++
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(p.b[p.i:])
			if (r == utf8.RuneError && n == 1) || r == '\u2028' || r == '\u2029' {
				verbatim = false
			}
			p.i += n
		default:
			p.i++
		}
	}
	return nil, errBadJSON
}

// appendCanon appends the canonical encoding of the JSON string body s
// (without its quotes) as encoding/json marshals its value, except that a
// lone surrogate escape as \udXXX (lower case) and an invalid UTF-8 byte as
// \xNN. The encoding is injective: two strings that differ in any code
// unit or byte never encode alike (encoding/json would turn both a lone
// surrogate and a stray byte into U+FFFD).
func appendCanon(out, s []byte) ([]byte, error) {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c == '\\' {
			if i+1 >= len(s) {
				return nil, errBadJSON
			}
			e := s[i+1]
			i += 2
			var r rune
			switch e {
			case '"', '\\', '/':
				r = rune(e)
			case 'b':
				r = '\b'
			case 'f':
				r = '\f'
			case 'n':
				r = '\n'
			case 'r':
				r = '\r'
			case 't':
				r = '\t'
			case 'u':
				u, ok := hex4(s[i:])
				if !ok {
					return nil, errBadJSON
				}
				i += 4
				r = rune(u)
				if utf16.IsSurrogate(r) {
					if r < 0xdc00 && i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
						if lo, ok := hex4(s[i+2:]); ok && lo >= 0xdc00 && lo <= 0xdfff {
							r = utf16.DecodeRune(r, rune(lo))
							i += 6
							out = appendRune(out, r)
							continue
						}
					}
					out = append(out, '\\', 'u', hex[u>>12], hex[u>>8&0xf], hex[u>>4&0xf], hex[u&0xf])
					continue
				}
			default:
				return nil, errBadJSON
			}
			out = appendRune(out, r)
			continue
		}
		if c < utf8.RuneSelf {
			out = appendRune(out, rune(c))
			i++
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 {
			out = append(out, '\\', 'x', hex[c>>4], hex[c&0xf])
			i++
			continue
		}
		out = appendRune(out, r)
		i += n
	}
	return append(out, '"'), nil
}

// appendRune appends r as appendCanon encodes a valid character.
func appendRune(out []byte, r rune) []byte {
	const hex = "0123456789abcdef"
	switch {
	case r == '"' || r == '\\':
		return append(out, '\\', byte(r))
	case r == '\n':
		return append(out, '\\', 'n')
	case r == '\r':
		return append(out, '\\', 'r')
	case r == '\t':
		return append(out, '\\', 't')
	case r == '\b':
		return append(out, '\\', 'b')
	case r == '\f':
		return append(out, '\\', 'f')
	case r < 0x20 || r == '<' || r == '>' || r == '&' || r == '\u2028' || r == '\u2029':
		if r > 0xff {
			return append(out, '\\', 'u', hex[r>>12], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
		}
		return append(out, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
	}
	return utf8.AppendRune(out, r)
}

// hex4 parses four hex digits.
func hex4(b []byte) (uint16, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var v uint16
	for _, c := range b[:4] {
		v <<= 4
		switch {
		case '0' <= c && c <= '9':
			v |= uint16(c - '0')
		case 'a' <= c && c <= 'f':
			v |= uint16(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			v |= uint16(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

// NormHash is the normalised tier's key: SHA-256 over sp's fields and the
// normalised dialog text (package index/norm), in a domain of its own so
// that it never equals a CanonicalHash.
func NormHash(sp Space, normalised string) [32]byte {
	var buf [128]byte
	head := append(buf[:0], "llmgate/index/norm/v1\x00"...)
	head = appendString(head, sp.Partition)
	head = appendString(head, sp.Route)
	head = appendString(head, sp.Shape)
	h := sha256.New()
	h.Write(head)
	h.Write([]byte(normalised))
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

package index

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// refCanonicalJSON is canonicalJSON as it was before objects were read in
// one buffer (a buffer per key and per value): the exact tier's keys are
// persisted and replicated, so the rewrite must give the same bytes.
func refCanonicalJSON(body []byte) ([]byte, []Member, bool) {
	if !json.Valid(body) {
		return nil, nil, false
	}
	var top []Member
	p := refParser{canonParser{b: body}, &top}
	out, ok := p.value(nil, 0)
	if !ok || p.next() != 0 {
		return nil, nil, false
	}
	return out, top, true
}

type refParser struct {
	canonParser
	top *[]Member
}

func (p *refParser) value(out []byte, depth int) ([]byte, bool) {
	if depth > maxDepth {
		return nil, false
	}
	switch p.next() {
	case '{':
		return p.object(out, depth)
	case '[':
		p.i++
		out = append(out, '[')
		if p.next() == ']' {
			p.i++
			return append(out, ']'), true
		}
		for {
			var ok bool
			if out, ok = p.value(out, depth+1); !ok {
				return nil, false
			}
			c := p.next()
			p.i++
			switch c {
			case ',':
				out = append(out, ',')
			case ']':
				return append(out, ']'), true
			default:
				return nil, false
			}
		}
	case '"':
		out, err := p.str(out)
		return out, err == nil
	case 0:
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) && !strings.ContainsRune(",]} \t\n\r", rune(p.b[p.i])) {
		p.i++
	}
	return append(out, p.b[start:p.i]...), true
}

func (p *refParser) object(out []byte, depth int) ([]byte, bool) {
	p.i++
	type member struct {
		name     string
		key, val []byte
	}
	var ms []member
	if p.next() == '}' {
		p.i++
		if depth == 0 {
			*p.top = []Member{}
		}
		return append(out, "{}"...), true
	}
	for {
		if p.next() != '"' {
			return nil, false
		}
		key, err := p.str(nil)
		if err != nil || p.next() != ':' {
			return nil, false
		}
		p.i++
		val, ok := p.value(nil, depth+1)
		if !ok {
			return nil, false
		}
		name := string(key[1 : len(key)-1])
		if bytes.IndexByte(key, '\\') >= 0 || !utf8.Valid(key) {
			if json.Unmarshal(key, &name) != nil {
				return nil, false
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
			return nil, false
		}
	}
	slices.SortStableFunc(ms, func(a, b member) int { return strings.Compare(a.name, b.name) })
	if depth == 0 {
		*p.top = make([]Member, len(ms))
		for i, m := range ms {
			(*p.top)[i] = Member{Name: m.name, Value: m.val}
		}
	}
	out = append(out, '{')
	for i, m := range ms {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, m.key...)
		out = append(out, ':')
		out = append(out, m.val...)
	}
	return append(out, '}'), true
}

// checkSameAsReference fails when Canonicalize(body) differs from the
// reference in validity, canonical bytes or members, or, when body is
// valid, CanonicalizeValid(body) differs from it (handed invalid JSON,
// CanonicalizeValid must only not panic).
func checkSameAsReference(t *testing.T, body []byte) {
	t.Helper()
	want, wantTop, ok := refCanonicalJSON(body)
	c, err := Canonicalize(body)
	if (err == nil) != ok {
		t.Fatalf("%q: error %v, the reference accepts it: %v", body, err, ok)
	}
	trusted, terr := CanonicalizeValid(body)
	if !ok {
		return
	}
	if terr != nil || !bytes.Equal(trusted.canon, c.canon) || !slices.EqualFunc(trusted.Members, c.Members, func(a, b Member) bool {
		return a.Name == b.Name && bytes.Equal(a.Value, b.Value)
	}) {
		t.Fatalf("%q: CanonicalizeValid gives %q %q (%v), Canonicalize %q %q", body, trusted.canon, trusted.Members, terr, c.canon, c.Members)
	}
	if !bytes.Equal(c.canon, want) {
		t.Fatalf("%q:\n canonical %q\n reference %q", body, c.canon, want)
	}
	if bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) != (c.Members != nil) || len(c.Members) != len(wantTop) {
		t.Fatalf("%q: members %q, reference %q", body, c.Members, wantTop)
	}
	for i, m := range c.Members {
		if m.Name != wantTop[i].Name || !bytes.Equal(m.Value, wantTop[i].Value) {
			t.Fatalf("%q: member %d is %q = %q, reference %q = %q", body, i, m.Name, m.Value, wantTop[i].Name, wantTop[i].Value)
		}
	}
}

func TestCanonicalMatchesReference(t *testing.T) {
	for _, body := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":16}`,
		`{"b":1,"a":[true,false,null,"x\u00e9<&>"],"stream":true,"user":"u"}`,
		`{"a":{"c":{"e":1,"d":[{"z":1,"y":{"x":2,"w":3}}]},"b":2},"a":0}`,
		`{"\u0062":1,"a":2,"\ud800":3,"\udc00":4,"é":5,"e\u0301":6}`,
		"{\"k\xff\":1,\"k\":2}", `[{"b":1,"a":2},{"d":{},"c":[]}]`, `{}`, `{"a":{}}`, ` { "a" : 1 , "b" : [ 1 , 2 ] } `,
		`{"x":"` + strings.Repeat(`\n\"é`, 200) + `","y":` + strings.Repeat(`{"q":`, 100) + `1` + strings.Repeat(`}`, 100) + `}`,
		`{"` + strings.Repeat("k", 40) + `":1,"stream_options":{"b":1,"a":2}}`,
	} {
		checkSameAsReference(t, []byte(body))
	}
	// Every body of the labelled pairs, as a chat request.
	for _, p := range labelledPrompts(t) {
		b, _ := json.Marshal(map[string]any{"model": "gpt-4o", "temperature": 0.2, "messages": []map[string]string{{"role": "system", "content": "be brief"}, {"role": "user", "content": p}}})
		checkSameAsReference(t, b)
	}
}

// FuzzCanonicalMatchesReference: Canonicalize gives the reference's bytes
// and members on any input.
func FuzzCanonicalMatchesReference(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"b":1,"a":[true,false,null,"x\u00e9<&>"],"stream":true,"user":"u"}`,
		`{"a":{"a":{"a":1}}}`, `{"a":1,"a":2}`, "{\"\xff\":\"\xfe\"}", `{"\ud800":{"b":[{"d":1,"c":2}],"a":0}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkSameAsReference(t, []byte(s)) })
}

// labelledPrompts are the texts of the labelled pairs in testdata.
func labelledPrompts(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("testdata/gptcache_300.json")
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
	tsv, err := os.ReadFile("testdata/paws_dev_300.tsv")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(tsv), "\n") {
		if f := strings.Split(line, "\t"); len(f) == 4 {
			out = append(out, f[1], f[2])
		}
	}
	if len(out) < 1000 {
		t.Fatalf("%d labelled texts", len(out))
	}
	return out
}

// BenchmarkCanonicalizeChat is the exact-tier key of the overhead
// benchmark's chat request, against the reference implementation.
func BenchmarkCanonicalizeChat(b *testing.B) {
	body := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"How should our team rotate the access keys of the billing service in region 18 when traffic doubles during the quarterly launch?"}],"max_tokens":16}`)
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			refCanonicalJSON(body)
		}
	})
	b.Run("canonicalize", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = Canonicalize(body)
		}
	})
	b.Run("canonicalize-valid", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = CanonicalizeValid(body)
		}
	})
}

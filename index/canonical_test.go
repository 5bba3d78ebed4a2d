package index

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCanonicalHash(t *testing.T) {
	base := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.2}`
	tests := []struct {
		name  string
		other string
		sp    Space
		same  bool
	}{
		{"identical", base, teamA, true},
		{"keys reordered", `{"temperature":0.2,"messages":[{"content":"hi","role":"user"}],"model":"gpt-4o"}`, teamA, true},
		{"whitespace", " {\n\t\"model\" : \"gpt-4o\",\r\n \"messages\":[ {\"role\":\"user\", \"content\":\"hi\"} ] , \"temperature\": 0.2 }\n", teamA, true},
		{"non-ASCII escaped or not", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"x":"\u00e9\u2028<"}`, teamA, false},
		{"string escapes", `{"model":"gpt\u002d4o","messages":[{"role":"user","content":"h\u0069"}],"temperature":0.2}`, teamA, true},
		{"stream ignored", `{"stream":true,"stream_options":{"include_usage":true},"user":"bob","model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.2}`, teamA, true},
		{"other content", `{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}],"temperature":0.2}`, teamA, false},
		{"other number", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.3}`, teamA, false},
		{"number spelled otherwise", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.20}`, teamA, false},
		{"string instead of number", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":"0.2"}`, teamA, false},
		{"extra key", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"n":2}`, teamA, false},
		{"nested user kept", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi","user":"x"}],"temperature":0.2}`, teamA, false},
		{"array order kept", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"},{"role":"user","content":"ho"}],"temperature":0.2}`, teamA, false},
		{"other partition", base, Space{"team-b", teamA.Route, teamA.Shape}, false},
		{"other route", base, Space{teamA.Partition, "gpt-4", teamA.Shape}, false},
		{"other shape", base, Space{teamA.Partition, teamA.Route, "s2"}, false},
		{"field boundary shift", base, Space{"team-ag", "pt-4o", teamA.Shape}, false},
	}
	want, err := CanonicalHash(teamA, []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CanonicalHash(tt.sp, []byte(tt.other))
			if err != nil {
				t.Fatal(err)
			}
			if (got == want) != tt.same {
				t.Fatalf("hash equal = %v, want %v", got == want, tt.same)
			}
		})
	}
	for _, bad := range []string{``, `{`, `{"a":}`, `{"a":1}{}`, `{"a":1} x`, `[1,]`, `{1:2}`, `nul`} {
		if _, err := CanonicalHash(teamA, []byte(bad)); err == nil {
			t.Errorf("invalid JSON %q hashed without error", bad)
		}
	}
	deep := strings.Repeat("[", 1000) + strings.Repeat("]", 1000)
	if _, err := CanonicalHash(teamA, []byte(deep)); err == nil {
		t.Error("1000-deep nesting accepted")
	}
	ok := strings.Repeat(`{"a":`, maxDepth) + "1" + strings.Repeat("}", maxDepth)
	if _, err := CanonicalHash(teamA, []byte(ok)); err != nil {
		t.Errorf("%d-deep nesting rejected: %v", maxDepth, err)
	}
}

// FuzzCanonicalHash checks CanonicalHash against encoding/json: it never
// panics, accepts only valid JSON, equals json.Marshal's sorted output (for
// bodies without duplicate keys), ignores key order and whitespace, and
// changes when a value changes.
func FuzzCanonicalHash(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"b":1,"a":[true,false,null,"x\u00e9<&>"],"stream":true,"user":"u"}`,
		`[1, 2.50, -3e10]`, `"s"`, `{}`, `{"a":{"a":{"a":1}}}`, `{"a":1,"a":2}`, "\"\xff\"",
		`{" ":"","":[{"":"","0":"0"}]}`, `{"<":1,"=":2,"\u003c":3}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		canon, err := canonicalJSON([]byte(s), nil, false)
		h, herr := CanonicalHash(teamA, []byte(s))
		if (err == nil) != (herr == nil) {
			t.Fatal("CanonicalHash and canonicalJSON disagree on validity")
		}
		if err != nil {
			return
		}
		if !json.Valid([]byte(s)) {
			t.Fatalf("accepted invalid JSON %q", s)
		}
		c, cerr := Canonicalize([]byte(s))
		if cerr != nil || c.Hash(teamA) != h {
			t.Fatalf("Canonicalize(%q).Hash differs from CanonicalHash (%v)", s, cerr)
		}
		checkMembers(t, s, c.Members)
		if !utf8.ValidString(s) {
			return // the canonical form marks invalid bytes; it is no longer JSON
		}
		if again, err := canonicalJSON(canon, nil, false); err != nil || !bytes.Equal(again, canon) {
			t.Fatalf("canonical form %q is not a fixed point: %q, %v", canon, again, err)
		}
		if dupKeys(s) {
			return
		}
		v := decodeNumbers(t, s)
		if m, ok := v.(map[string]any); ok {
			delete(m, "stream")
			delete(m, "stream_options")
			delete(m, "user")
		}
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(canon, want) && !bytes.Contains(want, []byte("\ufffd")) { // lone surrogates stay distinct
			t.Fatalf("canonical form\n %q\nwant (json.Marshal)\n %q", canon, want)
		}
		var shuffled bytes.Buffer
		writeReversed(&shuffled, v)
		if h2, err := CanonicalHash(teamA, shuffled.Bytes()); err != nil || h2 != h {
			t.Fatalf("reordered keys and whitespace changed the hash: %q vs %q (%v)", shuffled.Bytes(), s, err)
		}
		if m, ok := v.(map[string]any); ok && len(m) > 0 {
			for k := range m {
				m[k] = []any{m[k]}
				break
			}
			changed, _ := json.Marshal(m)
			if h3, err := CanonicalHash(teamA, changed); err != nil || h3 == h {
				t.Fatalf("a changed value kept the hash: %q vs %q", changed, s)
			}
		}
		if other, _ := CanonicalHash(Space{"x", teamA.Route, teamA.Shape}, []byte(s)); other == h {
			t.Fatal("partition did not change the hash")
		}
	})
}

func decodeNumbers(t *testing.T, s string) any {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("encoding/json rejects %q: %v", s, err)
	}
	return v
}

// dupKeys reports whether some object in s repeats a key.
func dupKeys(s string) bool {
	dec := json.NewDecoder(strings.NewReader(s))
	type frame struct {
		keys  map[string]bool
		isObj bool
		onKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if top != nil && top.isObj {
					top.onKey = true
				}
				stack = append(stack, &frame{keys: map[string]bool{}, isObj: d == '{', onKey: true})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if top != nil && top.isObj {
			if top.onKey {
				k := tok.(string)
				if top.keys[k] {
					return true
				}
				top.keys[k] = true
			}
			top.onKey = !top.onKey
		}
	}
}

// writeReversed encodes v with object keys in reverse order and extra
// whitespace.
func writeReversed(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case map[string]any:
		keys := slices.Sorted(maps.Keys(v))
		slices.Reverse(keys)
		b.WriteString("{ ")
		for i, k := range keys {
			if i > 0 {
				b.WriteString(" ,\n")
			}
			kb, _ := json.Marshal(k)
			b.Write(kb)
			b.WriteString(" :\t")
			writeReversed(b, v[k])
		}
		b.WriteString(" }")
	case []any:
		b.WriteString("[ ")
		for i, x := range v {
			if i > 0 {
				b.WriteString(",  ")
			}
			writeReversed(b, x)
		}
		b.WriteString("\r\n]")
	default:
		x, _ := json.Marshal(v)
		b.Write(x)
	}
}

func TestCanonicalJSONEscapes(t *testing.T) {
	tests := []struct{ in, want string }{
		{`"é"`, `"é"`},
		{`"\u00e9"`, `"é"`},
		{"\"\u2028\"", `"\u2028"`},
		{`"<a&b>"`, `"\u003ca\u0026b\u003e"`},
		{`"\/\t"`, `"/\t"`},
		{"\"\xff\"", `"\xff"`},
		{`"\ud800"`, `"\ud800"`},
		{`"\uD83D\uDE00"`, "\"\U0001F600\""},
		{"\"\ufffd\"", "\"\ufffd\""},
		{` { "stream" : true , "b" : [ 1 , 2.50 ] , "a" : { "user" : 1 } } `, `{"a":{"user":1},"b":[1,2.50]}`},
		{`{"str\u0065am":true,"a":1}`, `{"a":1}`},
		{`{"a":2,"a":1}`, `{"a":2,"a":1}`},
	}
	for _, tt := range tests {
		got, err := canonicalJSON([]byte(tt.in), nil, false)
		if err != nil || string(got) != tt.want {
			t.Errorf("canonicalJSON(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func BenchmarkCanonicalHash(b *testing.B) {
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":[{"type":"text","text":"describe"},{"type":"image_url","image_url":{"url":"data:image/png;base64,` +
		strings.Repeat("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg", 4000) + `"}}]}],"temperature":0.2,"stream":true}`)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := CanonicalHash(teamA, body); err != nil {
			b.Fatal(err)
		}
	}
}

// TestExactTierNeverMergesDifferentRequests names each way two different
// bodies could share an exact key.
func TestExactTierNeverMergesDifferentRequests(t *testing.T) {
	tests := []struct{ name, a, b string }{
		{"duplicate keys in swapped order are different requests", `{"a":1,"a":2}`, `{"a":2,"a":1}`},
		{"duplicate message keys in swapped order are different requests",
			`{"messages":[{"role":"user","content":"x","content":"y"}]}`, `{"messages":[{"role":"user","content":"y","content":"x"}]}`},
		{"different lone surrogates are different requests", `{"c":"\ud800"}`, `{"c":"\ud801"}`},
		{"a lone surrogate is not U+FFFD", `{"c":"\ud800"}`, `{"c":"\ufffd"}`},
		{"different invalid bytes are different requests", "{\"c\":\"\xff\"}", "{\"c\":\"\xfe\"}"},
		{"an invalid byte is not U+FFFD", "{\"c\":\"\xff\"}", `{"c":"\ufffd"}`},
		{"moved turn boundary is a different request",
			`{"messages":[{"role":"user","content":"A\nB"},{"role":"assistant","content":"C"}]}`,
			`{"messages":[{"role":"user","content":"A"},{"role":"assistant","content":"B\nC"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ha, err := CanonicalHash(teamA, []byte(tt.a))
			if err != nil {
				t.Fatal(err)
			}
			hb, err := CanonicalHash(teamA, []byte(tt.b))
			if err != nil {
				t.Fatal(err)
			}
			if ha == hb {
				t.Errorf("%s and %s share an exact key", tt.a, tt.b)
			}
		})
	}
	// What must still merge: the same characters escaped differently.
	same := [][2]string{{`{"c":"\u00e9","d":1}`, `{"d":1,"c":"é"}`}, {`{"c":"\ud83d\ude00"}`, "{\"c\":\"\U0001F600\"}"}}
	for _, p := range same {
		ha, _ := CanonicalHash(teamA, []byte(p[0]))
		hb, _ := CanonicalHash(teamA, []byte(p[1]))
		if ha != hb {
			t.Errorf("%s and %s should share an exact key", p[0], p[1])
		}
	}
}

// checkMembers checks that members are body's top-level members as
// encoding/json decodes them (names; values equal as JSON), sorted by name,
// without the keys the exact tier ignores.
func checkMembers(t *testing.T, body string, members []Member) {
	t.Helper()
	var top map[string]json.RawMessage
	if json.Unmarshal([]byte(body), &top) != nil {
		if members != nil {
			t.Fatalf("members of a body that is not an object: %q", body)
		}
		return
	}
	if members == nil {
		t.Fatalf("no members for object %q", body)
	}
	for i, m := range members {
		if i > 0 && members[i-1].Name > m.Name {
			t.Fatalf("members of %q not sorted: %q before %q", body, members[i-1].Name, m.Name)
		}
		if ignoredKey(m.Name) {
			t.Fatalf("ignored key %q among the members of %q", m.Name, body)
		}
		if _, ok := top[m.Name]; !ok {
			t.Fatalf("member %q is not a key of %q", m.Name, body)
		}
		if i+1 == len(members) || members[i+1].Name != m.Name { // the last of its name: the one decoding keeps
			want, err := canonicalJSON(top[m.Name], nil, false)
			if err != nil || !bytes.Equal(want, m.Value) {
				t.Fatalf("member %q of %q: value %q, want %q", m.Name, body, m.Value, want)
			}
		}
	}
}

func TestCanonicalizeMembers(t *testing.T) {
	body := `{"stream":true,"b":[1, 2],"a":"x\u00e9","a":{"z":1,"y":2},"user":"u"}`
	c, err := Canonicalize([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []Member{{"a", []byte(`"xé"`)}, {"a", []byte(`{"y":2,"z":1}`)}, {"b", []byte(`[1,2]`)}}
	if len(c.Members) != len(want) {
		t.Fatalf("members %q, want %q", c.Members, want)
	}
	for i := range want {
		if c.Members[i].Name != want[i].Name || !bytes.Equal(c.Members[i].Value, want[i].Value) {
			t.Fatalf("member %d: %q = %s, want %q = %s", i, c.Members[i].Name, c.Members[i].Value, want[i].Name, want[i].Value)
		}
	}
	if h, _ := CanonicalHash(teamA, []byte(body)); c.Hash(teamA) != h {
		t.Fatal("Hash differs from CanonicalHash")
	}
	if c, err := Canonicalize([]byte(`[1]`)); err != nil || c.Members != nil {
		t.Fatalf("an array body: members %v, err %v", c.Members, err)
	}
	if _, err := Canonicalize([]byte(`{"a":`)); err == nil {
		t.Fatal("invalid JSON canonicalised")
	}
}

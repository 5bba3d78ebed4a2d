package cluster

import (
	"slices"
	"testing"
)

func TestWireRoundTrips(t *testing.T) {
	k, from, body, err := unframe(frame(kindCache, "gw-1", []byte("payload")))
	if err != nil || k != kindCache || from != "gw-1" || string(body) != "payload" {
		t.Fatalf("frame: %v %v %q %q", err, k, from, body)
	}
	var d Digest
	d[0], d[255] = 1, 2
	s, d2, err := parseDigest(appendDigest(nil, 42, &d))
	if err != nil || s != 42 || d2 != d {
		t.Fatalf("digest: %v %d", err, s)
	}
	vs := []Version{{ID: "00000000000000aa", CreatedAt: 12345}, {ID: "b", CreatedAt: -1, Deleted: true}}
	m, err := parseVersions(appendVersions(nil, 7, 2, true, []uint8{3, 200}, vs))
	if err != nil || m.session != 7 || m.seq != 2 || !m.last || !slices.Equal(m.buckets, []uint8{3, 200}) || !slices.Equal(m.versions, vs) {
		t.Fatalf("versions: %v %+v", err, m)
	}
	s, seq, ids, err := parseWant(appendWant(nil, 9, 3, []string{"a", "bb"}))
	if err != nil || s != 9 || seq != 3 || !slices.Equal(ids, []string{"a", "bb"}) {
		t.Fatalf("want: %v", err)
	}
	s, seq, pl, err := parseEntries(appendEntries(nil, 9, 4, []byte("xyz")))
	if err != nil || s != 9 || seq != 4 || string(pl) != "xyz" {
		t.Fatalf("entries: %v", err)
	}
	st, err := parseState(appendState(nil, [][]byte{[]byte("a"), {}, []byte("ccc")}))
	if err != nil || len(st) != 3 || string(st[2]) != "ccc" {
		t.Fatalf("state: %v %q", err, st)
	}
}

func TestWireRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, {1}, {1, 5, 'a'}} {
		if _, _, _, err := unframe(b); err == nil {
			t.Errorf("unframe(%v) accepted", b)
		}
	}
	if _, err := parseVersions([]byte{1, 2, 3}); err == nil {
		t.Error("short versions accepted")
	}
	if _, err := parseState([]byte{10, 1}); err == nil {
		t.Error("truncated state accepted")
	}
}

// FuzzDecode feeds every decoder the same bytes: none may panic, and a
// version list that decodes re-encodes to one that decodes to as many
// versions.
func FuzzDecode(f *testing.F) {
	f.Add(frame(kindDigest, "n", appendDigest(nil, 1, &Digest{})))
	f.Add(appendVersions(nil, 1, 0, true, []uint8{1}, []Version{{ID: "x", CreatedAt: 5}}))
	f.Add(appendWant(nil, 1, 1, []string{"a"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _, _ = unframe(b)
		_, _, _ = parseDigest(b)
		if m, err := parseVersions(b); err == nil {
			again := appendVersions(nil, m.session, m.seq, m.last, m.buckets, m.versions)
			if m2, err := parseVersions(again); err != nil || len(m2.versions) != len(m.versions) {
				t.Fatalf("re-encoded versions do not decode: %v", err)
			}
		}
		_, _, _, _ = parseWant(b)
		_, _, _, _ = parseEntries(b)
		_, _ = parseState(b)
	})
}

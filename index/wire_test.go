package index

import (
	"bytes"
	"math"
	"reflect"
	"testing"
	"time"
)

func wireChanges() []Change {
	e := entry(Space{"team-a/eu", "gpt-4o", "shape"}, "dialog\nwith lines", spread(3))
	e.ID = "0123456789abcdef"
	e.CreatedAt = time.Unix(1700000000, 123456789)
	e.ExpiresAt = e.CreatedAt.Add(time.Hour)
	e.Hits = 3
	exactOnly := &Entry{ID: "00000000000000aa", CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt}
	return []Change{
		{Kind: ChangeStored, Entry: e, At: e.CreatedAt},
		{Kind: ChangeStored, Entry: exactOnly, At: exactOnly.CreatedAt},
		{Kind: ChangeDeleted, ID: "fedcba9876543210", At: time.Unix(1700000001, 5)},
		{Kind: ChangeDeleted, ID: "fedcba9876543210"},
		{Kind: ChangePurged, Partition: "team-a", Route: "gpt-4o", At: time.Unix(1700000002, 0)},
		{Kind: ChangePurged},
	}
}

func TestChangeRoundTrip(t *testing.T) {
	chs := wireChanges()
	var msg []byte
	for _, ch := range chs {
		msg = AppendChange(msg, ch)
	}
	for i, want := range chs {
		got, n, err := DecodeChange(msg)
		if err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("change %d round trip:\n got %+v\nwant %+v", i, got, want)
		}
		if want.Entry != nil && !reflect.DeepEqual(got.Entry, want.Entry) {
			t.Fatalf("change %d entry:\n got %+v\nwant %+v", i, got.Entry, want.Entry)
		}
		msg = msg[n:]
	}
	if len(msg) != 0 {
		t.Fatalf("%d bytes left", len(msg))
	}
	for _, ch := range chs {
		b := AppendChange(nil, ch)
		if ch.Entry != nil && len(b) != 2+len(ch.Entry.ID)+uvarintLen(uint64(entryLen(ch.Entry)))+len(encodeEntry(ch.Entry)) {
			t.Fatalf("entryLen disagrees with the encoding")
		}
		for n := range len(b) {
			if _, _, err := DecodeChange(b[:n]); err == nil {
				t.Fatalf("%v change truncated to %d of %d bytes decoded", ch.Kind, n, len(b))
			}
		}
	}
	for _, bad := range []Change{
		{Kind: 0},
		{Kind: 7},
		{Kind: ChangeStored},
		{Kind: ChangeStored, Entry: &Entry{ID: "not hex"}},
		{Kind: ChangeDeleted, ID: "0123"},
	} {
		if _, _, err := DecodeChange(AppendChange(nil, bad)); err == nil {
			t.Errorf("%+v decoded", bad)
		}
	}
}

func FuzzDecodeChange(f *testing.F) {
	for _, ch := range wireChanges() {
		f.Add(AppendChange(nil, ch))
	}
	nan := wireChanges()[0]
	nan.Entry.Vector[0] = float32(math.NaN())
	f.Add(AppendChange(nil, nan))
	f.Add([]byte{byte(ChangeStored), 16})
	f.Add([]byte{byte(ChangeStored), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, n, err := DecodeChange(b)
		if err != nil {
			return
		}
		if n <= 0 || n > len(b) {
			t.Fatalf("consumed %d of %d bytes", n, len(b))
		}
		// Compared by encoding: a vector may hold NaNs, which DeepEqual
		// finds unequal to themselves.
		enc := AppendChange(nil, ch)
		again, m, err := DecodeChange(enc)
		if err != nil || m != len(enc) || !bytes.Equal(AppendChange(nil, again), enc) {
			t.Fatalf("decoded change does not round-trip: %v\n%+v\n%+v", err, ch, again)
		}
		if m > n {
			// Re-encoding is canonical: never longer than what was read.
			t.Fatalf("re-encoding took %d bytes, decoding %d", m, n)
		}
	})
}

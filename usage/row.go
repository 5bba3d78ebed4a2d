package usage

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Key names one row: one origin's totals for one hour of one consumer,
// route and end user ("" when unknown).
type Key struct {
	Hour                  int64 // Unix seconds of the UTC hour's start
	Origin                string
	Consumer, Route, User string
}

// Totals are a row's grow-only counters.
type Totals struct {
	Requests   int64
	Prompt     int64 // prompt tokens charged
	Completion int64 // completion tokens charged
	Cached     int64 // prompt tokens served by the backend's prompt cache
	CacheHits  int64 // requests answered by the gateway's cache
	Saved      int64 // tokens those hits spared
	CostNano   int64 // cost in billionths of a US dollar
	SavedNano  int64 // what the spared tokens would have cost, likewise
	// Refused counts the requests answered with an error instead (a limit,
	// bad input, no backend …); they are not in Requests and cost nothing.
	Refused int64
}

// Row is one origin's totals for one key.
type Row struct {
	Key
	Totals
}

// fields lists a Totals' counters in their encoded order. New counters go
// at the end: an encoding with fewer fields (an older node's, or a row on
// disk from before) reads as zeros for the missing ones, and a reader
// skips the fields it does not know.
func (t *Totals) fields() [9]*int64 {
	return [9]*int64{&t.Requests, &t.Prompt, &t.Completion, &t.Cached, &t.CacheHits, &t.Saved, &t.CostNano, &t.SavedNano, &t.Refused}
}

// maxFields bounds the counters an encoding may hold, known or not.
const maxFields = 64

// maxOf raises each counter of t to o's where o's is larger; it reports
// whether anything changed.
func (t *Totals) maxOf(o Totals) bool {
	changed := false
	of := o.fields()
	for i, f := range t.fields() {
		if *of[i] > *f {
			*f = *of[i]
			changed = true
		}
	}
	return changed
}

func (t *Totals) add(o Totals) {
	of := o.fields()
	for i, f := range t.fields() {
		*f += *of[i]
	}
}

// maxString bounds every name on the wire and on disk.
const maxString = 1 << 10

var errCorrupt = errors.New("usage: malformed row")

// appendKey encodes k's strings, length-prefixed, after the hour.
func appendStrings(b []byte, ss ...string) []byte {
	for _, s := range ss {
		s = s[:min(len(s), maxString)]
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func appendTotals(b []byte, t Totals) []byte {
	for _, f := range t.fields() {
		b = binary.AppendUvarint(b, uint64(max(*f, 0)))
	}
	return b
}

func readString(b []byte) (string, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > maxString || uint64(len(b)-k) < n {
		return "", nil, errCorrupt
	}
	return string(b[k : k+int(n)]), b[k+int(n):], nil
}

// readTotals reads n counters from b, in fields order; those beyond the
// known fields are skipped.
func readTotals(b []byte, n int) (Totals, []byte, error) {
	var t Totals
	fs := t.fields()
	for i := range n {
		v, k := binary.Uvarint(b)
		if k <= 0 || v > 1<<62 {
			return Totals{}, nil, errCorrupt
		}
		if i < len(fs) {
			*fs[i] = int64(v)
		}
		b = b[k:]
	}
	return t, b, nil
}

// readDiskTotals reads a value written by appendTotals, by this version or
// an older one with fewer fields.
func readDiskTotals(b []byte) (Totals, error) {
	n := 0
	for i := 0; i < len(b); i++ {
		if b[i] < 0x80 {
			n++
		}
	}
	if n == 0 || n > maxFields || b[len(b)-1] >= 0x80 {
		return Totals{}, errCorrupt
	}
	t, _, err := readTotals(b, n)
	return t, err
}

// Payload versions: 1 holds exactly the first eight fields per row; 2
// (written now) a count of fields before them.
const (
	wireV1      = 1
	wireVersion = 2
)

// EncodeRows packs rows into payloads of at most maxBytes each (a row
// larger than that travels alone).
func EncodeRows(rows []Row, maxBytes int) [][]byte {
	var out [][]byte
	pkt := []byte{wireVersion}
	var row []byte
	for _, r := range rows {
		row = binary.AppendVarint(row[:0], r.Hour)
		row = appendStrings(row, r.Origin, r.Consumer, r.Route, r.User)
		row = binary.AppendUvarint(row, uint64(len(r.Totals.fields())))
		row = appendTotals(row, r.Totals)
		if len(pkt) > 1 && len(pkt)+len(row) > maxBytes {
			out = append(out, pkt)
			pkt = []byte{wireVersion}
		}
		pkt = append(pkt, row...)
	}
	if len(pkt) > 1 {
		out = append(out, pkt)
	}
	return out
}

// DecodeRows reads one payload of EncodeRows.
func DecodeRows(p []byte) ([]Row, error) {
	if len(p) == 0 || p[0] != wireVersion && p[0] != wireV1 {
		return nil, fmt.Errorf("usage: unknown payload version")
	}
	version := p[0]
	p = p[1:]
	var rows []Row
	for len(p) > 0 {
		var r Row
		var k int
		r.Hour, k = binary.Varint(p)
		if k <= 0 {
			return nil, errCorrupt
		}
		p = p[k:]
		var err error
		for _, s := range []*string{&r.Origin, &r.Consumer, &r.Route, &r.User} {
			if *s, p, err = readString(p); err != nil {
				return nil, err
			}
		}
		n := uint64(8)
		if version != wireV1 {
			var k int
			if n, k = binary.Uvarint(p); k <= 0 || n > maxFields {
				return nil, errCorrupt
			}
			p = p[k:]
		}
		if r.Totals, p, err = readTotals(p, int(n)); err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// Disk layout: prefix + hour (8 bytes, big endian, so keys sort by hour) +
// the length-prefixed strings; the value is the encoded totals.
func diskKey(prefix string, k Key) []byte {
	b := make([]byte, 0, len(prefix)+8+len(k.Origin)+len(k.Consumer)+len(k.Route)+len(k.User)+4)
	b = append(b, prefix...)
	b = binary.BigEndian.AppendUint64(b, uint64(k.Hour))
	return appendStrings(b, k.Origin, k.Consumer, k.Route, k.User)
}

func parseDiskKey(prefix string, b []byte) (Key, error) {
	if len(b) < len(prefix)+8 {
		return Key{}, errCorrupt
	}
	b = b[len(prefix):]
	k := Key{Hour: int64(binary.BigEndian.Uint64(b))}
	b = b[8:]
	var err error
	for _, s := range []*string{&k.Origin, &k.Consumer, &k.Route, &k.User} {
		if *s, b, err = readString(b); err != nil {
			return Key{}, err
		}
	}
	if len(b) != 0 {
		return Key{}, errCorrupt
	}
	return k, nil
}

func hourKey(prefix string, hour int64) []byte {
	return binary.BigEndian.AppendUint64([]byte(prefix), uint64(hour))
}

package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// kind is the first byte of every message between nodes.
type kind byte

const (
	kindQuota    kind = 1 // QuotaState payload
	kindCache    kind = 2 // batch of cache changes (CacheState payload)
	kindDigest   kind = 3 // catch-up request: session, the puller's Digest
	kindVersions kind = 4 // catch-up answer: session, last flag, buckets' versions
	kindWant     kind = 5 // catch-up request: session, sequence, IDs wanted
	kindEntries  kind = 6 // catch-up answer: session, sequence, CacheState payload
	kindBye      kind = 7 // the sender is leaving on purpose (no body)
)

func (k kind) String() string {
	switch k {
	case kindQuota:
		return "quota"
	case kindCache:
		return "cache"
	case kindDigest:
		return "digest"
	case kindVersions:
		return "versions"
	case kindWant:
		return "want"
	case kindEntries:
		return "entries"
	case kindBye:
		return "bye"
	}
	return "unknown"
}

// maxNameLen bounds a sender's name in a header.
const maxNameLen = 255

var errMalformed = errors.New("cluster: malformed message")

// frame returns kind, the sender's name and body as one message. memberlist
// does not tell a receiver who sent a user message, so every frame says it.
func frame(k kind, from string, body []byte) []byte {
	b := make([]byte, 0, 2+len(from)+len(body))
	b = append(b, byte(k), byte(len(from)))
	b = append(b, from...)
	return append(b, body...)
}

// unframe splits a message made by frame. body aliases msg.
func unframe(msg []byte) (k kind, from string, body []byte, err error) {
	if len(msg) < 2 {
		return 0, "", nil, errMalformed
	}
	n := int(msg[1])
	if len(msg) < 2+n {
		return 0, "", nil, errMalformed
	}
	return kind(msg[0]), string(msg[2 : 2+n]), msg[2+n:], nil
}

// reader decodes the bodies below; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errMalformed
	}
	r.b = nil
}

func (r *reader) u64() uint64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) uvarint(limit uint64) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > limit {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) str(limit uint64) string {
	n := r.uvarint(limit)
	if r.err != nil || n > uint64(len(r.b)) {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// maxIDLen bounds an entry ID on the wire.
const maxIDLen = 64

func appendDigest(b []byte, session uint64, d *Digest) []byte {
	b = binary.LittleEndian.AppendUint64(b, session)
	for _, v := range d {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

func parseDigest(body []byte) (session uint64, d Digest, err error) {
	r := reader{b: body}
	session = r.u64()
	for i := range d {
		d[i] = r.u64()
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	return session, d, r.err
}

// appendVersions encodes chunk seq (from 0) of an answer to a digest: the
// buckets it covers (in the last chunk only, so the puller knows what to
// compare) and versions. Chunks travel on separate connections and may
// arrive in any order: the last one's seq tells how many to wait for.
func appendVersions(b []byte, session, seq uint64, last bool, buckets []uint8, vs []Version) []byte {
	b = binary.LittleEndian.AppendUint64(b, session)
	b = binary.AppendUvarint(b, seq)
	flag := byte(0)
	if last {
		flag = 1
	}
	b = append(b, flag)
	b = binary.AppendUvarint(b, uint64(len(buckets)))
	b = append(b, buckets...)
	b = binary.AppendUvarint(b, uint64(len(vs)))
	for _, v := range vs {
		b = binary.AppendUvarint(b, uint64(len(v.ID)))
		b = append(b, v.ID...)
		b = binary.AppendVarint(b, v.CreatedAt)
		del := byte(0)
		if v.Deleted {
			del = 1
		}
		b = append(b, del)
	}
	return b
}

type versionsMsg struct {
	session  uint64
	seq      uint64
	last     bool
	buckets  []uint8
	versions []Version
}

func parseVersions(body []byte) (versionsMsg, error) {
	r := reader{b: body}
	var m versionsMsg
	m.session = r.u64()
	m.seq = r.uvarint(1 << 32)
	m.last = r.byte() == 1
	nb := r.uvarint(256)
	if r.err == nil && nb <= uint64(len(r.b)) {
		m.buckets = append([]uint8(nil), r.b[:nb]...)
		r.b = r.b[nb:]
	} else {
		r.fail()
	}
	// Every version takes at least 3 bytes: the count cannot exceed that.
	nv := r.uvarint(uint64(len(r.b)) / 3)
	if r.err == nil {
		m.versions = make([]Version, 0, nv)
	}
	for i := uint64(0); i < nv && r.err == nil; i++ {
		v := Version{ID: r.str(maxIDLen), CreatedAt: r.varint(), Deleted: r.byte() == 1}
		m.versions = append(m.versions, v)
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	if r.err != nil {
		return versionsMsg{}, fmt.Errorf("versions: %w", r.err)
	}
	return m, nil
}

func appendWant(b []byte, session, seq uint64, ids []string) []byte {
	b = binary.LittleEndian.AppendUint64(b, session)
	b = binary.AppendUvarint(b, seq)
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = binary.AppendUvarint(b, uint64(len(id)))
		b = append(b, id...)
	}
	return b
}

func parseWant(body []byte) (session, seq uint64, ids []string, err error) {
	r := reader{b: body}
	session = r.u64()
	seq = r.uvarint(1 << 62)
	n := r.uvarint(uint64(len(r.b)))
	for i := uint64(0); i < n && r.err == nil; i++ {
		ids = append(ids, r.str(maxIDLen))
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	if r.err != nil {
		return 0, 0, nil, fmt.Errorf("want: %w", r.err)
	}
	return session, seq, ids, nil
}

func appendEntries(b []byte, session, seq uint64, payload []byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, session)
	b = binary.AppendUvarint(b, seq)
	return append(b, payload...)
}

func parseEntries(body []byte) (session, seq uint64, payload []byte, err error) {
	r := reader{b: body}
	session = r.u64()
	seq = r.uvarint(1 << 62)
	if r.err != nil {
		return 0, 0, nil, fmt.Errorf("entries: %w", r.err)
	}
	return session, seq, r.b, nil
}

// appendState encodes push/pull state: each payload length-prefixed.
func appendState(b []byte, payloads [][]byte) []byte {
	for _, p := range payloads {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return b
}

func parseState(b []byte) ([][]byte, error) {
	var out [][]byte
	r := reader{b: b}
	for len(r.b) > 0 && r.err == nil {
		n := r.uvarint(uint64(len(r.b)))
		if r.err != nil || n > uint64(len(r.b)) {
			r.fail()
			break
		}
		out = append(out, r.b[:n])
		r.b = r.b[n:]
	}
	if r.err != nil {
		return nil, fmt.Errorf("push/pull state: %w", r.err)
	}
	return out, nil
}

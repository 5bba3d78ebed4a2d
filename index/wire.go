package index

import (
	"encoding/binary"
	"fmt"
	"time"
)

// AppendChange appends ch's wire encoding to b and returns the extended
// slice. Encodings are self-delimiting, so several can be concatenated in
// one message and read back one by one with DecodeChange.
//
// The encoding is the kind byte, then, by kind:
//
//	stored:  ID, the entry as persisted (Vector included), length-prefixed
//	deleted: ID, At
//	purged:  Partition, Route, At
//
// Strings are length-prefixed (uvarint); At is Unix nanoseconds (varint,
// 0 for the zero time). A Change that Apply would reject for its shape (a
// stored one without an entry, say) may encode to bytes that DecodeChange
// rejects.
func AppendChange(b []byte, ch Change) []byte {
	b = append(b, byte(ch.Kind))
	switch ch.Kind {
	case ChangeStored:
		if ch.Entry == nil {
			return append(b, 0, 0)
		}
		b = appendString(b, ch.Entry.ID)
		b = binary.AppendUvarint(b, uint64(entryLen(ch.Entry)))
		b = appendEntry(b, ch.Entry)
	case ChangeDeleted:
		b = appendString(b, ch.ID)
		b = binary.AppendVarint(b, nanos(ch.At))
	case ChangePurged:
		b = appendString(b, ch.Partition)
		b = appendString(b, ch.Route)
		b = binary.AppendVarint(b, nanos(ch.At))
	}
	return b
}

// DecodeChange reads one Change from the front of b and returns it with
// the number of bytes it took. It never panics and allocates no more than
// a small multiple of len(b); anything malformed is an error. The Change
// shares no memory with b.
func DecodeChange(b []byte) (Change, int, error) {
	d := decoder{b: b}
	ch := Change{Kind: ChangeKind(d.byte())}
	switch ch.Kind {
	case ChangeStored:
		id := string(d.bytes())
		enc := d.bytes()
		if d.err != nil {
			break
		}
		if _, ok := parseID(id); !ok {
			return Change{}, 0, fmt.Errorf("%w: stored change with id %q", errCorrupt, id)
		}
		e, err := decodeEntry(id, enc)
		if err != nil {
			return Change{}, 0, fmt.Errorf("stored change %s: %w", id, err)
		}
		ch.Entry, ch.At = e, e.CreatedAt
	case ChangeDeleted:
		ch.ID = string(d.bytes())
		ch.At = fromNanos(d.varint())
		if _, ok := parseID(ch.ID); !ok && d.err == nil {
			return Change{}, 0, fmt.Errorf("%w: deleted change with id %q", errCorrupt, ch.ID)
		}
	case ChangePurged:
		ch.Partition = string(d.bytes())
		ch.Route = string(d.bytes())
		ch.At = fromNanos(d.varint())
	default:
		if d.err == nil {
			return Change{}, 0, fmt.Errorf("%w: unknown change kind %d", errCorrupt, ch.Kind)
		}
	}
	if d.err != nil {
		return Change{}, 0, fmt.Errorf("decoding a change: %w", d.err)
	}
	return ch, len(b) - len(d.b), nil
}

// nanos is t in Unix nanoseconds, 0 for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

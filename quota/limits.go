package quota

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// LimitRecord is a consumer's run-time limit change, last-writer-wins per
// field: of two values of a field, the one with the later version (At), or
// with equal versions the greater origin name, wins on every node.
type LimitRecord struct {
	Consumer string
	// TPM and QuotaTokens are the run-time values; nil = that field was not
	// changed at run time and follows the configuration.
	TPM, QuotaTokens *int64
	// TPMAt and QuotaAt are the fields' versions: Unix nanoseconds of the
	// change on the node that made it (0 for changes stored before versions
	// existed).
	TPMAt, QuotaAt int64
	// TPMOrigin and QuotaOrigin name the node that made each change; they
	// break ties between equal versions.
	TPMOrigin, QuotaOrigin string
}

func ptrTo(v int64) *int64 { return &v }

// clone returns a copy of r that shares no pointer with it.
func (r LimitRecord) clone() LimitRecord {
	if r.TPM != nil {
		r.TPM = ptrTo(*r.TPM)
	}
	if r.QuotaTokens != nil {
		r.QuotaTokens = ptrTo(*r.QuotaTokens)
	}
	return r
}

// apply returns lim with r's run-time fields in place of the configured ones.
func (r LimitRecord) apply(lim Limits) Limits {
	if r.TPM != nil {
		lim.TPM = *r.TPM
	}
	if r.QuotaTokens != nil {
		lim.QuotaTokens = *r.QuotaTokens
	}
	return lim
}

// newer reports whether version (at, origin) wins over (at2, origin2).
func newer(at int64, origin string, at2 int64, origin2 string) bool {
	return at > at2 || at == at2 && origin > origin2
}

// join returns r with the fields of in that win over r's, and whether any
// did. A field in wins only if it is set and not negative; validity against
// the consumer's configuration is the caller's concern.
func (r LimitRecord) join(in LimitRecord) (LimitRecord, bool) {
	changed := false
	if in.TPM != nil && *in.TPM >= 0 && (r.TPM == nil || newer(in.TPMAt, in.TPMOrigin, r.TPMAt, r.TPMOrigin)) {
		r.TPM, r.TPMAt, r.TPMOrigin = ptrTo(*in.TPM), in.TPMAt, in.TPMOrigin
		changed = true
	}
	if in.QuotaTokens != nil && *in.QuotaTokens >= 0 && (r.QuotaTokens == nil || newer(in.QuotaAt, in.QuotaOrigin, r.QuotaAt, r.QuotaOrigin)) {
		r.QuotaTokens, r.QuotaAt, r.QuotaOrigin = ptrTo(*in.QuotaTokens), in.QuotaAt, in.QuotaOrigin
		changed = true
	}
	return r, changed
}

// ApplyLimits merges run-time limit changes received from peers: per field,
// the later version wins (ties: the greater origin name), so every node ends
// with the same limits whatever the order, duplication or delay of the
// records. Changed records are persisted before ApplyLimits returns and then
// applied to every shard. Records of consumers not configured here are
// ignored, and so are fields that would make this node's limits invalid
// (negative, or a quota for a consumer that has no period here). Errors:
// ctx done, ErrClosed, or the database write; nothing is applied then.
func (l *Limiter) ApplyLimits(ctx context.Context, recs []LimitRecord) error {
	if err := l.usable(ctx); err != nil {
		return fmt.Errorf("quota: apply limits: %w", err)
	}
	l.setMu.Lock()
	defer l.setMu.Unlock()
	next := map[string]LimitRecord{}
	config := l.configured()
	for _, in := range recs {
		if _, ok := config[in.Consumer]; !ok {
			continue
		}
		cur, ok := next[in.Consumer]
		if !ok {
			cur = l.records[in.Consumer]
			cur.Consumer = in.Consumer
		}
		// Field by field, so that an invalid quota does not hold back a
		// valid TPM.
		for _, field := range []LimitRecord{{TPM: in.TPM, TPMAt: in.TPMAt, TPMOrigin: in.TPMOrigin}, {QuotaTokens: in.QuotaTokens, QuotaAt: in.QuotaAt, QuotaOrigin: in.QuotaOrigin}} {
			joined, changed := cur.join(field)
			if !changed {
				continue
			}
			if err := joined.apply(config[in.Consumer]).validate(); err != nil {
				l.log.Warn("ignoring a peer's limit change", "consumer", in.Consumer, "err", err)
				continue
			}
			cur = joined
			next[in.Consumer] = cur
		}
	}
	if len(next) == 0 {
		return nil
	}
	changed := make([]LimitRecord, 0, len(next))
	limits := make(map[string]Limits, len(next))
	for name, rec := range next {
		changed = append(changed, rec)
		limits[name] = rec.apply(config[name])
	}
	if err := l.storeLimits(changed); err != nil {
		return fmt.Errorf("quota: apply limits: %w", err)
	}
	for name, rec := range next {
		l.records[name] = rec
	}
	if err := l.broadcastLimits(ctx, limits); err != nil {
		return fmt.Errorf("quota: apply limits: %w", err)
	}
	return nil
}

// outgoingLimits returns the limit records to send: all of them (full), or
// those changed here by SetLimits in the last resendRounds calls.
func (l *Limiter) outgoingLimits(full bool) []LimitRecord {
	l.setMu.Lock()
	defer l.setMu.Unlock()
	var out []LimitRecord
	if full {
		for _, rec := range l.records {
			out = append(out, rec.clone())
		}
	} else {
		for name, n := range l.limitsOut {
			out = append(out, l.records[name].clone())
			if n <= 1 {
				delete(l.limitsOut, name)
			} else {
				l.limitsOut[name] = n - 1
			}
		}
	}
	slices.SortFunc(out, func(a, b LimitRecord) int { return cmp.Compare(a.Consumer, b.Consumer) })
	return out
}

// limitRecordsVersion is the first byte of EncodeLimitRecords' output.
const limitRecordsVersion = 1

// Field flags of an encoded LimitRecord.
const (
	hasTPM   = 1 << 0
	hasQuota = 1 << 1
)

var errBadLimitRecords = errors.New("malformed limit records")

// EncodeLimitRecords packs records for a peer:
//
//	version byte (1)
//	uvarint number of records, then per record:
//	  uvarint length, consumer
//	  flags byte: 1 = TPM set, 2 = quota set
//	  per field set (TPM first): uvarint value, varint version (At),
//	    uvarint length, origin
//
// Negative values (invalid everywhere) are left out.
func EncodeLimitRecords(recs []LimitRecord) []byte {
	buf := []byte{limitRecordsVersion}
	buf = binary.AppendUvarint(buf, uint64(len(recs)))
	field := func(buf []byte, v int64, at int64, origin string) []byte {
		buf = binary.AppendUvarint(buf, uint64(v))
		buf = binary.AppendVarint(buf, at)
		buf = binary.AppendUvarint(buf, uint64(len(origin)))
		return append(buf, origin...)
	}
	for _, r := range recs {
		buf = binary.AppendUvarint(buf, uint64(len(r.Consumer)))
		buf = append(buf, r.Consumer...)
		var flags byte
		if r.TPM != nil && *r.TPM >= 0 {
			flags |= hasTPM
		}
		if r.QuotaTokens != nil && *r.QuotaTokens >= 0 {
			flags |= hasQuota
		}
		buf = append(buf, flags)
		if flags&hasTPM != 0 {
			buf = field(buf, *r.TPM, r.TPMAt, r.TPMOrigin)
		}
		if flags&hasQuota != 0 {
			buf = field(buf, *r.QuotaTokens, r.QuotaAt, r.QuotaOrigin)
		}
	}
	return buf
}

// DecodeLimitRecords is the inverse of EncodeLimitRecords. Malformed input
// is an error, never a panic.
func DecodeLimitRecords(b []byte) ([]LimitRecord, error) {
	r := &reader{v: b, base: errBadLimitRecords}
	if v := r.byte(); r.err == nil && v != limitRecordsVersion {
		return nil, fmt.Errorf("%w: unknown version %d", errBadLimitRecords, v)
	}
	// Each record takes at least two bytes: a bound before allocating.
	n := r.uvarint(uint64(len(r.v) / 2))
	out := make([]LimitRecord, 0, n)
	for range n {
		rec := LimitRecord{Consumer: r.str()}
		flags := r.byte()
		if flags&^(hasTPM|hasQuota) != 0 {
			return nil, fmt.Errorf("%w: unknown flags %#x", errBadLimitRecords, flags)
		}
		if flags&hasTPM != 0 {
			rec.TPM = ptrTo(int64(r.uvarint(math.MaxInt64)))
			rec.TPMAt, rec.TPMOrigin = r.varint(), r.str()
		}
		if flags&hasQuota != 0 {
			rec.QuotaTokens = ptrTo(int64(r.uvarint(math.MaxInt64)))
			rec.QuotaAt, rec.QuotaOrigin = r.varint(), r.str()
		}
		if r.err != nil {
			break
		}
		out = append(out, rec)
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.v) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errBadLimitRecords, len(r.v))
	}
	return out, nil
}

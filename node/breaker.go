package node

import (
	"sync/atomic"
	"time"
)

// breaker is one backend's circuit breaker. It is written by the attempts made
// against the backend and read by every request choosing a backend, so it is
// lock-free: two atomics, no shared map.
//
// States: closed (openUntil in the past), open (openUntil in the future). After
// failures consecutive failures, or a 429 / 503 with a retry hint, it opens until
// the hint or the cooldown passes; then requests flow again and the next result
// decides (one success closes it, one failure re-opens it for a doubled cooldown).
type breaker struct {
	threshold int32
	cooldown  time.Duration

	failures  atomic.Int32
	openUntil atomic.Int64 // unix nanoseconds
	trips     atomic.Int32 // consecutive openings, for the backoff
}

func newBreaker(threshold int, cooldown time.Duration) *breaker {
	return &breaker{threshold: int32(threshold), cooldown: cooldown}
}

// open reports whether the breaker refuses traffic at now, and until when.
func (b *breaker) open(now time.Time) (bool, time.Time) {
	until := b.openUntil.Load()
	if now.UnixNano() < until {
		return true, time.Unix(0, until)
	}
	return false, time.Time{}
}

func (b *breaker) success() {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
	if b.trips.Load() != 0 {
		b.trips.Store(0)
	}
}

// failure records a failed attempt (connect error, timeout, 5xx without hint).
func (b *breaker) failure(now time.Time) {
	n := b.failures.Add(1)
	if isOpen, _ := b.open(now); isOpen || n < b.threshold {
		return
	}
	// Past the threshold, or (failures not reset since the last opening) the
	// first result after an opening expired was another failure.
	trips := b.trips.Add(1)
	b.extend(now.Add(b.cooldown << min(trips-1, 5)))
}

// throttled records a 429 (or 503) that said when to come back.
func (b *breaker) throttled(now time.Time, retryAfter time.Duration) {
	if retryAfter <= 0 {
		b.failure(now)
		return
	}
	b.extend(now.Add(retryAfter))
}

// extend moves openUntil forward to t, never back.
func (b *breaker) extend(t time.Time) {
	for {
		cur := b.openUntil.Load()
		if t.UnixNano() <= cur || b.openUntil.CompareAndSwap(cur, t.UnixNano()) {
			return
		}
	}
}

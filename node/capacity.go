package node

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// headerRemainingTTL is how long a backend's x-ratelimit-remaining-tokens
// reading is trusted: Azure's window is a minute, and a backend that is not
// tried produces no fresher reading, so it gets traffic again after this.
const headerRemainingTTL = 5 * time.Second

// capacity tracks how close a backend is to its own TPM, from what this node
// sent it (when its tpm is configured) and from the remaining-tokens header
// it last answered with. It steers requests to another backend of the same
// priority group before the backend starts refusing. The header reading is
// lock-free; the per-second ring has a mutex held for a few additions.
type capacity struct {
	tpm int64
	// mu guards the ring of tokens sent per second over the last minute
	// (slot i belongs to the second in stamps[i]); only backends with a
	// configured tpm use it.
	mu          sync.Mutex
	sentBuckets [60]int64
	stamps      [60]int64

	remaining atomic.Int64 // from the last answer's header; -1 = none
	readAt    atomic.Int64 // unix nanoseconds of that reading
}

func newCapacity(tpm int64) *capacity {
	c := &capacity{tpm: tpm}
	c.remaining.Store(-1)
	return c
}

// sent records a request of tokens sent at now.
func (c *capacity) sent(tokens int64, now time.Time) {
	if c.tpm <= 0 || tokens <= 0 {
		return
	}
	sec := now.Unix()
	i := sec % 60
	c.mu.Lock()
	if c.stamps[i] != sec {
		c.stamps[i], c.sentBuckets[i] = sec, 0
	}
	c.sentBuckets[i] += tokens
	c.mu.Unlock()
}

// observe reads the backend's remaining-tokens header, if any.
func (c *capacity) observe(h http.Header, now time.Time) {
	v := h.Get(headerRemainTokensKey)
	if v == "" {
		return
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return
	}
	c.remaining.Store(n)
	c.readAt.Store(now.UnixNano())
}

// room reports whether the backend can likely take tokens more at now.
func (c *capacity) room(tokens int64, now time.Time) bool {
	if r := c.remaining.Load(); r >= 0 && now.UnixNano()-c.readAt.Load() < int64(headerRemainingTTL) && r < tokens {
		return false
	}
	if c.tpm <= 0 {
		return true
	}
	return c.sentLastMinute(now)+tokens <= c.tpm
}

// deferFull moves backends without room for tokens to the end of order, in
// place: they are still tried, but only after the others of their group.
func deferFull(order []*backend, tokens int64, now time.Time) []*backend {
	if len(order) < 2 {
		return order
	}
	var full [8]*backend
	fulls := full[:0]
	k := 0
	for _, b := range order {
		if b.capacity.room(tokens, now) {
			order[k] = b
			k++
		} else {
			fulls = append(fulls, b)
		}
	}
	copy(order[k:], fulls)
	return order
}

// remainingAt is the backend's token headroom at now: its own header while
// fresh, else the configured tpm less what was sent in the last minute.
func (c *capacity) remainingAt(now time.Time) (int64, bool) {
	if r := c.remaining.Load(); r >= 0 && now.UnixNano()-c.readAt.Load() < int64(headerRemainingTTL) {
		return r, true
	}
	if c.tpm <= 0 {
		return 0, false
	}
	return max(c.tpm-c.sentLastMinute(now), 0), true
}

// sentLastMinute is what this node sent the backend in the minute up to now.
func (c *capacity) sentLastMinute(now time.Time) int64 {
	sec := now.Unix()
	var used int64
	c.mu.Lock()
	for i, s := range c.stamps {
		if s > sec-60 && s <= sec {
			used += c.sentBuckets[i]
		}
	}
	c.mu.Unlock()
	return used
}

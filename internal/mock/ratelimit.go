package mock

import (
	"sync"
	"time"
)

const (
	// window is the length of the sliding TPM window.
	window = time.Minute
	// bucketWidth is how close in time two charges must be to share a
	// bucket. It bounds the window's memory to about window/bucketWidth
	// buckets whatever the request rate.
	bucketWidth = 100 * time.Millisecond
)

// tpmWindow is the mock's own sliding-window token limit: the tokens charged
// in the last minute may not exceed limit. It is the only place the window's
// state lives, and mu guards all of it.
//
// Invariants: buckets are in time order; tokens and requests are the sums of
// the buckets' fields; a bucket expires a full window after its latest
// charge, so coalescing charges never frees tokens early.
type tpmWindow struct {
	limit int64 // tokens per minute
	rpm   int64 // requests per minute reported (not enforced): 6 per 1,000 TPM, as Azure assigns

	mu       sync.Mutex
	buckets  []bucket
	tokens   int64
	requests int64
}

type bucket struct {
	first, last time.Time // first and latest charge in the bucket
	tokens      int64
	requests    int64
}

// admission is the outcome of one charge.
type admission struct {
	ok                bool
	remainingTokens   int64         // after the charge if admitted
	remainingRequests int64         // after the charge if admitted
	retryAfter        time.Duration // if refused: until enough tokens free
}

func newTPMWindow(limit int64) *tpmWindow {
	return &tpmWindow{limit: limit, rpm: max(1, limit*6/1000)}
}

// admit charges cost tokens at now if they fit in the window.
func (w *tpmWindow) admit(now time.Time, cost int64) admission {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expire(now)
	if w.tokens+cost > w.limit {
		return admission{
			remainingTokens:   max(0, w.limit-w.tokens),
			remainingRequests: max(0, w.rpm-w.requests),
			retryAfter:        w.retryAfter(now, cost),
		}
	}
	if n := len(w.buckets); n > 0 && now.Sub(w.buckets[n-1].first) < bucketWidth {
		b := &w.buckets[n-1]
		b.tokens += cost
		b.requests++
		if now.After(b.last) {
			b.last = now
		}
	} else {
		w.buckets = append(w.buckets, bucket{first: now, last: now, tokens: cost, requests: 1})
	}
	w.tokens += cost
	w.requests++
	return admission{
		ok:                true,
		remainingTokens:   w.limit - w.tokens,
		remainingRequests: max(0, w.rpm-w.requests),
	}
}

// expire drops the buckets whose latest charge is a window or more ago.
func (w *tpmWindow) expire(now time.Time) {
	i := 0
	for i < len(w.buckets) && !w.buckets[i].last.Add(window).After(now) {
		w.tokens -= w.buckets[i].tokens
		w.requests -= w.buckets[i].requests
		i++
	}
	w.buckets = w.buckets[i:]
}

// retryAfter returns how long until enough charges expire for cost to fit.
// A cost above the limit never fits; it is told to wait until the window is
// empty, the best any caller can do.
func (w *tpmWindow) retryAfter(now time.Time, cost int64) time.Duration {
	need := w.tokens + cost - w.limit
	var freed int64
	for _, b := range w.buckets {
		freed += b.tokens
		if freed >= need {
			return max(b.last.Add(window).Sub(now), time.Millisecond)
		}
	}
	if n := len(w.buckets); n > 0 {
		return max(w.buckets[n-1].last.Add(window).Sub(now), time.Millisecond)
	}
	return window
}

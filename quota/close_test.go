package quota

import (
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// callerIs reports whether the calling stack holds a function whose name
// ends with suffix.
func callerIs(suffix string) bool {
	pc := make([]uintptr, 32)
	n := runtime.Callers(2, pc)
	frames := runtime.CallersFrames(pc[:n])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, suffix) {
			return true
		}
		if !more {
			return false
		}
	}
}

// A ReserveSpare that passed its closed check just before Close ran, and
// draws after it, must be refused: Close's final snapshot retires every
// grant and makes none, and a reservation taken then would be in no
// snapshot, its settlement dropped.
func TestSpareReserveRacingCloseIsRefused(t *testing.T) {
	ck := newClock(t0)
	var hook atomic.Pointer[func()]
	now := func() time.Time {
		if f := hook.Load(); f != nil && callerIs(".(*Limiter).ReserveSpare") && hook.CompareAndSwap(f, nil) {
			(*f)()
		}
		return ck.now()
	}
	l, err := Open(Options{Now: now, Shards: 1, NodeName: "n1"}, map[string]Limits{"a": {TPM: 100000}})
	if err != nil {
		t.Fatal(err)
	}
	reserve(t, l, "a", "", 100) // the shard's; it makes a grant
	if r, _ := reserve(t, l, "a", "", 100); r.drawn == nil {
		t.Fatal("second reservation not taken from the grant")
	}
	closeNow := func() { l.Close() }
	hook.Store(&closeNow)
	r, d, ok := l.ReserveSpare("a", "", 100) // Close runs between its closed check and its draw
	select {
	case <-l.closing:
	default:
		t.Fatal("Close did not run")
	}
	if ok {
		t.Fatalf("ReserveSpare admitted %+v (drawn %v) after Close", d, r.drawn != nil)
	}
	if _, live := l.shards[0].grants.Load(counterKey{"a", ""}); live {
		t.Fatal("a grant is published after Close")
	}
}

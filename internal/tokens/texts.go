package tokens

import (
	"hash/maphash"
	"strings"
	"sync/atomic"
)

// textCache remembers the counts of whole message texts that chat clients
// send again and again: a system prompt, few-shot examples, and the earlier
// turns of a conversation, which a client resends with every new turn (so
// that counting a conversation's requests would otherwise grow with the
// square of its length). It keeps the text and compares it byte for byte,
// so a count from the cache is the count. Direct-mapped: a text takes the
// slot of its hash, replacing what was there. Readers and writers share it
// without locks through atomic pointers to immutable entries.
type textCache struct {
	seed  maphash.Seed
	slots [textSlots]atomic.Pointer[textEntry]
}

const (
	textSlots = 1 << 10
	// Shorter texts cost little more to count than to look up; longer
	// ones would make the cache's memory (at most textSlots ×
	// maxCachedText, 8 MB) depend on a few huge prompts.
	minCachedText = 128
	maxCachedText = 8 << 10
)

type textEntry struct {
	text string
	n    int
}

func (c *textCache) slot(text string) *atomic.Pointer[textEntry] {
	return &c.slots[maphash.String(c.seed, text)%textSlots]
}

// count returns e's count of text, from the cache when text is there, and
// keeps it there otherwise.
func (c *textCache) count(e *encoder, text string) int {
	if len(text) < minCachedText || len(text) > maxCachedText {
		return e.count(text)
	}
	s := c.slot(text)
	if ent := s.Load(); ent != nil && ent.text == text {
		return ent.n
	}
	n := e.count(text)
	// Clone: text points into a request body the cache must not keep alive.
	s.Store(&textEntry{text: strings.Clone(text), n: n})
	return n
}

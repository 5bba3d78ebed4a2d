package node

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/llmgate/llmgate/index"
	"github.com/llmgate/llmgate/index/guard"
	"github.com/llmgate/llmgate/index/norm"
	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/verify"
)

// Cache is what the look-up and store stages need from the semantic cache.
// Implemented by *index.Cache; every call is a message to its actors and
// honours ctx. Returned entries are immutable.
type Cache interface {
	// Ready is false while persisted entries are still being loaded; look-ups
	// then miss (stores still work).
	Ready() bool
	// LookupKeyed looks up the exact tier (the request's hash), then the
	// normalised tier (the hash of its normalised dialog, index/norm; zero:
	// none), in one message; accept says whether a found entry can answer.
	LookupKeyed(ctx context.Context, sp index.Space, exact, norm [32]byte, accept func(*index.Entry) bool) (e *index.Entry, normalized, ok bool)
	// NearestGuarded returns the nearest entry within threshold that the
	// guard accepts, counting nothing; SemanticHit or Miss counts it.
	NearestGuarded(ctx context.Context, sp index.Space, vec []float32, prompt string, threshold float32) (*index.Entry, float32, bool)
	// NearestJudgeable is NearestGuarded that, when the guard accepts no
	// candidate, offers the nearest one it refused only on wording
	// (guard.Judgeable) with judge true: served only if a judge confirms.
	NearestJudgeable(ctx context.Context, sp index.Space, vec []float32, prompt string, threshold float32) (e *index.Entry, d float32, judge, ok bool)
	SemanticHit(ctx context.Context, sp index.Space, e *index.Entry)
	Store(ctx context.Context, e *index.Entry) error
	// StoreAsync is Store without waiting: done (which must not block) is
	// called with its outcome once the entry is persisted and in memory.
	// It takes e and its slices.
	StoreAsync(e *index.Entry, done func(error))
	Stats() index.Stats
	// Miss counts a look-up that ended before the semantic tier (nothing to
	// embed, embedder failed, cache still loading).
	Miss()
	// Search lists the k nearest entries of a partition and route (all
	// shapes when sp.Shape is empty), guard not applied: for the admin API.
	Search(ctx context.Context, sp index.Space, vec []float32, k int) []index.SearchMatch
}

// x-llmgate-cache values (SPEC §4).
const (
	cacheHit    = "hit"
	cacheMiss   = "miss"
	cacheBypass = "bypass" // this request cannot be cached
	cacheOff    = "off"    // no cache, or the client turned it off
)

// Deadlines of the cache's stages. A stuck or slow cache must cost a request
// at most this much, never its answer.
const (
	lookupTimeout = 250 * time.Millisecond // the whole look-up, embed_timeout added for a remote embedder
)

// maxSemanticPrompt bounds the dialog text that is embedded; longer dialogs
// use the exact tier only.
const maxSemanticPrompt = 32 << 10

// cachePlan is what the cache stages know about one call.
type cachePlan struct {
	state  string
	space  index.Space
	exact  [32]byte
	norm   [32]byte      // normalised tier key; zero when the dialog has no semantic tier
	prompt string        // retained dialog text
	ttl    time.Duration // 0 = the cache's default
	vec    []float32     // embedding, once computed
}

// answerNeutral reports whether a top-level chat parameter leaves the answer
// as it is, and so stays out of a cache partition's shape; every other
// top-level field is part of the shape.
func answerNeutral(key string) bool {
	switch key {
	case "model", "messages", "stream", "stream_options", "user", "metadata", "store", "service_tier",
		"input", "instructions": // the Responses API's dialog, keyed as messages are

		return true
	}
	return false
}

// The cache's request headers in canonical form (http.CanonicalHeaderKey
// of HeaderCache and HeaderCacheTTL, which TestCanonicalCacheHeaders
// checks): read with them, a header costs no canonicalising copy per
// request.
const (
	headerCacheKey    = "X-Llmgate-Cache"
	headerCacheTTLKey = "X-Llmgate-Cache-Ttl"
)

// planCache decides whether call may use the cache and where its entries live.
func (g *Gateway) planCache(call *Call) cachePlan {
	if g.cache == nil || strings.EqualFold(call.Header.Get(headerCacheKey), "off") {
		return cachePlan{state: cacheOff}
	}
	bypass := cachePlan{state: cacheBypass}
	msgs, temperature, ok := wireOf(call).dialog(call)
	if !ok || len(msgs) > g.cacheCfg.MaxMessageCount {
		return bypass
	}
	cp := cachePlan{state: cacheMiss}
	if v := call.Header.Get(headerCacheTTLKey); v != "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs <= 0 {
			return bypass // a TTL of nothing: do not store
		}
		cp.ttl = time.Duration(min(secs, 1<<30)) * time.Second
	}
	// One pass over the body gives both the exact key and the members the
	// shape is made of. A call with a dialog was parsed from its body
	// (ParseChat, ParseResponses), which validated it as json.Valid does:
	// the body is not validated a second time.
	canon, err := index.CanonicalizeValid(call.Body)
	if err != nil || canon.Members == nil {
		return bypass
	}
	d, ok := retainedDialog(msgs)
	if !ok {
		return bypass // images, audio: the embedding cannot see them
	}
	sh := index.HashCanonical(index.Space{}, g.shape(call, canon.Members, temperature, d))
	cp.space = index.Space{Partition: g.partition(call), Route: call.Route, Shape: hex.EncodeToString(sh[:8])}
	cp.exact = canon.Hash(cp.space)
	if !d.toolTurns && !d.opaque {
		// A tool's output is read by the model with the call that asked for
		// it, which the dialog text does not show: such dialogs match exactly
		// or not at all.
		cp.prompt = d.text
		cp.norm = index.NormHash(cp.space, norm.Text(d.text))
	}
	return cp
}

// shape is the canonical JSON object (see index.CanonicalHash) of what,
// besides the dialog, makes two requests' answers alike: the body's
// top-level members that are not answer-neutral, the temperature's bucket,
// the operation (not for chat, which keeps the shapes it always had, so its
// stored entries stay reachable), the turns' roles and, unless ignored, the
// system messages. A member the body names twice counts once, by its last
// value, and a name given here replaces the body's.
func (g *Gateway) shape(call *Call, members []index.Member, temperature *float64, d dialog) []byte {
	type field struct {
		name string
		val  []byte
	}
	var buf [16]field // most requests: no allocation for the list
	fields := buf[:0]
	for _, m := range members {
		if !answerNeutral(m.Name) {
			fields = append(fields, field{m.Name, m.Value})
		}
	}
	if temperature != nil {
		fields = append(fields, field{"temperature", index.AppendCanonicalString(nil, temperatureBucket(*temperature))})
	}
	if call.Op != openai.OpChat {
		fields = append(fields, field{"·op", index.AppendCanonicalString(nil, call.Op.String())})
	}
	fields = append(fields, field{"·roles", canonicalStrings(d.roles)})
	if !g.cacheCfg.IgnoreSystemMessages {
		fields = append(fields, field{"·system", canonicalStrings(d.system)})
	}
	// Stable: of equal names the last stays last, and is the one kept.
	slices.SortStableFunc(fields, func(a, b field) int { return strings.Compare(a.name, b.name) })
	size := 2
	for _, f := range fields {
		size += len(f.name) + len(f.val) + 4 // the name's quotes, ':' and ','
	}
	out := append(make([]byte, 0, size), '{') // names needing escapes grow it
	for i, f := range fields {
		if i+1 < len(fields) && fields[i+1].name == f.name {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = index.AppendCanonicalString(out, f.name)
		out = append(out, ':')
		out = append(out, f.val...)
	}
	return append(out, '}')
}

// canonicalStrings is the canonical JSON of ss as encoding/json marshals
// it: null when nil.
func canonicalStrings(ss []string) []byte {
	if ss == nil {
		return []byte("null")
	}
	size := 2
	for _, s := range ss {
		size += len(s) + 3 // its quotes and ','
	}
	out := append(make([]byte, 0, size), '[') // escapes grow it
	for i, s := range ss {
		if i > 0 {
			out = append(out, ',')
		}
		out = index.AppendCanonicalString(out, s)
	}
	return append(out, ']')
}

// dialog is what the cache keeps of a chat's messages.
type dialog struct {
	text      string   // non-system contents, one per line: what is embedded
	roles     []string // role:name of each non-system turn
	system    []string // system and developer contents
	toolTurns bool     // a tool result or tool call is part of the dialog
	// opaque: a content holds the turn separator or U+FFFD (which stands
	// for a lone surrogate or an invalid byte, so two different requests
	// would read alike): such dialogs use the exact tier only.
	opaque bool
}

// retainedDialog reads msgs; ok is false when a content is not text. The
// turns are joined with guard.TurnSeparator, so that the guard sees where
// one speaker stops and the next begins.
func retainedDialog(msgs []openai.Message) (d dialog, ok bool) {
	// One turn (the usual prompt) is its own text; more are joined.
	var sb strings.Builder
	var first string
	for _, m := range msgs {
		text, ok := messageText(m)
		if !ok {
			return d, false
		}
		switch m.Role {
		case "system", "developer":
			d.system = append(d.system, text)
			continue
		case "tool", "function":
			d.toolTurns = true
		}
		d.roles = append(d.roles, m.Role+":"+m.Name)
		if strings.Contains(text, guard.TurnSeparator) || strings.ContainsRune(text, utf8.RuneError) {
			d.opaque = true
		}
		switch len(d.roles) {
		case 1:
			first = text
			continue
		case 2:
			sb.WriteString(first)
		}
		sb.WriteString(guard.TurnSeparator)
		sb.WriteString(text)
	}
	d.text = first
	if len(d.roles) > 1 {
		d.text = sb.String()
	}
	return d, true
}

// partition names the call's cache partition: its vary_by values joined by
// "/" (SPEC §6), the consumer first unless the cache is shared.
func (g *Gateway) partition(call *Call) string {
	vary := g.cacheCfg.VaryBy
	if len(vary) == 0 { // the default: the consumer alone, no list to join
		if g.cacheCfg.Shared {
			return "shared"
		}
		return partitionSegment(call.Consumer.Name)
	}
	var parts []string
	hasConsumer := false
	for _, v := range vary {
		hasConsumer = hasConsumer || v == "consumer"
	}
	if !g.cacheCfg.Shared && !hasConsumer {
		parts = append(parts, partitionSegment(call.Consumer.Name))
	}
	for _, v := range vary {
		var val string
		switch {
		case v == "consumer":
			if g.cacheCfg.Shared {
				continue
			}
			val = call.Consumer.Name
		case v == "route":
			val = call.Route
		case v == "user":
			val = g.user(call)
		case strings.HasPrefix(v, "header:"):
			val = call.Header.Get(strings.TrimPrefix(v, "header:"))
		}
		parts = append(parts, partitionSegment(val))
	}
	if len(parts) == 0 {
		return "shared"
	}
	return strings.Join(parts, "/")
}

// partitionSegment escapes one vary_by value so that distinct values never
// name the same partition: "/" and "%" are escaped, and a missing value is
// "-", which a present value "-" can never become.
func partitionSegment(v string) string {
	switch v {
	case "":
		return "-"
	case "-":
		return "%2D"
	}
	return url.PathEscape(v)
}

// temperatureBucket groups temperatures that give answers of the same kind:
// deterministic, focused, balanced, creative.
func temperatureBucket(t float64) string {
	switch {
	case t == 0:
		return "0"
	case t <= 0.3:
		return "low"
	case t <= 1:
		return "mid"
	}
	return "high"
}

// messageText returns a message content's text: a string, null, or text
// parts; ok is false when a part is not text. ParseChat has usually decoded
// it already.
func messageText(m openai.Message) (string, bool) {
	if t := m.Text; t != nil {
		switch {
		case t.Other:
			return "", false
		case len(t.Parts) == 1:
			return t.Parts[0], true
		}
		return strings.Join(t.Parts, ""), true
	}
	return openai.ContentText(m.Content, func(t string) bool { return t == "text" })
}

// lookup tries the exact tier, then embeds the prompt and tries the semantic
// tier. On a hit it answers the client and returns true. Any cache or
// embedder failure is a miss.
func (g *Gateway) lookup(ctx context.Context, w http.ResponseWriter, call *Call, cp *cachePlan) (Outcome, bool) {
	ready := g.cache.Ready()
	start := g.now()
	// One deadline for the stage: both cache calls and the built-in
	// embedder's work (which never blocks) share lookupTimeout; another
	// embedder has embed_timeout of its own on top. A deadline per call
	// cost each miss two more timers.
	_, local := g.embedder.(LocalEmbedder)
	var lctx context.Context
	if local {
		// Only the cache's calls wait on it: a shared deadline, no
		// context of its own (see cacheWaits).
		lctx = g.waits.lookup.get()
	} else {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(ctx, lookupTimeout+g.cacheCfg.EmbedTimeout)
		defer cancel()
	}
	if ready {
		e, normalized, ok := g.cache.LookupKeyed(lctx, cp.space, cp.exact, cp.norm, func(e *index.Entry) bool { return g.replayable(call, e) })
		if ok {
			tier := "exact"
			if normalized {
				tier = "normalized"
			}
			g.metrics.lookup(tier, g.now().Sub(start))
			return g.serveHit(ctx, w, call, e, 0, tier), true
		}
	}
	if cp.prompt == "" || len(cp.prompt) > maxSemanticPrompt {
		g.cache.Miss()
		g.metrics.lookup("miss", g.now().Sub(start))
		return Outcome{}, false
	}
	ectx, ecancel := lctx, context.CancelFunc(nil)
	if !local {
		ectx, ecancel = context.WithTimeout(lctx, g.cacheCfg.EmbedTimeout)
	}
	vec, err := g.embedder.Embed(ectx, cp.prompt)
	if ecancel != nil {
		ecancel()
	}
	g.metrics.embedded(err, g.now().Sub(start))
	if err != nil {
		g.cache.Miss()
		g.log.Warn("embedding failed; request goes uncached", "route", call.Route, "request_id", call.RequestID, "err", err)
		return Outcome{}, false
	}
	cp.vec = vec
	if !ready {
		g.cache.Miss()
		g.metrics.lookup("miss", g.now().Sub(start))
		return Outcome{}, false
	}
	lstart := g.now()
	base := float32(g.cacheCfg.ScoreThreshold)
	radius := base
	if g.verifier != nil {
		radius = max(base, float32(g.cacheCfg.Verify.Radius))
	}
	var e *index.Entry
	var d float32
	var ok, judge bool
	if g.verifier != nil {
		e, d, judge, ok = g.cache.NearestJudgeable(lctx, cp.space, vec, cp.prompt, radius)
	} else {
		e, d, ok = g.cache.NearestGuarded(lctx, cp.space, vec, cp.prompt, radius)
	}
	if ok && g.replayable(call, e) {
		tier := "semantic"
		if g.verifier != nil {
			key := verify.Key(cp.space.Partition, call.Route)
			switch {
			case judge: // refused by the guard on wording only: the judge decides, always
				if !g.verifier.Settle(ctx, key, call.Route, cp.prompt, e.Prompt, d) {
					ok = false
				}
				tier = "verified"
			case d <= base || g.verifier.Vouched(ctx, key, d):
				g.verifier.MaybeAudit(key, call.Route, cp.prompt, e.Prompt, d)
			case g.verifier.Confirm(ctx, key, call.Route, cp.prompt, e.Prompt, d):
				tier = "verified"
			default:
				ok = false
			}
		}
		if ok {
			g.cache.SemanticHit(ctx, cp.space, e)
			g.metrics.lookup(tier, g.now().Sub(lstart))
			return g.serveHit(ctx, w, call, e, d, tier), true
		}
	}
	g.cache.Miss()
	g.metrics.lookup("miss", g.now().Sub(lstart))
	return Outcome{}, false
}

// replayable reports whether e can answer call: tool calls are only
// replayed to non-streaming clients.
func (g *Gateway) replayable(call *Call, e *index.Entry) bool {
	return wireOf(call).replayable(call, e.Response)
}

// serveHit answers call from the cached entry e, found by tier at distance
// d. A normalised hit reports distance 0: its text equals the entry's once
// normalised, and no embedding was made.
func (g *Gateway) serveHit(ctx context.Context, w http.ResponseWriter, call *Call, e *index.Entry, d float32, tier string) Outcome {
	h := w.Header()
	h.Set(headerCacheKey, cacheHit)
	h.Set(HeaderCacheTier, tier)
	h.Set(HeaderCacheDistance, strconv.FormatFloat(float64(max(d, 0)), 'f', 4, 32))
	h.Set(HeaderTokensConsumed, "0")
	// A hit costs no tokens: it only reports the consumer's headroom.
	g.LimitHeaders(ctx, h, call.Consumer, call.Header, call.Route)
	body, id := wireOf(call).hit(ctx, g, call, e.Response)
	if call.Stream {
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(wireOf(call).replay(call, body))
		_ = http.NewResponseController(w).Flush()
	} else {
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	}
	out := Outcome{Status: http.StatusOK, Cache: cacheHit, Distance: float64(max(d, 0)), ResponseID: id}
	out.Saved, out.SavedPrompt = storedUsage(e.Response)
	if call.Capture {
		out.Answer = body
	}
	return out
}

// storedUsage is the token usage recorded in a stored answer: what a hit on
// it spared.
func storedUsage(body []byte) (total, prompt int64) {
	var c struct {
		Usage *usage `json:"usage"`
	}
	if json.Unmarshal(body, &c) != nil || c.Usage == nil {
		return 0, 0
	}
	total = c.Usage.total()
	return total, min(max(c.Usage.Prompt, 0), total)
}

// store caches body, an answer its caller found cacheable. Failures are
// logged, never returned: the client has its answer either way.
func (g *Gateway) store(ctx context.Context, call *Call, cp cachePlan, body []byte) {
	if g.space != nil && !g.space.Storing() {
		return // the data disk is below its reserve: served, not stored
	}
	if limit := g.cacheCfg.MaxEntryBytes; limit > 0 && int64(len(body)) > limit {
		g.log.Debug("answer larger than cache.max_entry_bytes; served, not stored", "route", call.Route, "request_id", call.RequestID, "bytes", len(body))
		return
	}
	e := &index.Entry{Space: cp.space, Exact: cp.exact, Norm: cp.norm, Prompt: cp.prompt, Vector: cp.vec, Response: body}
	if cp.ttl > 0 {
		e.ExpiresAt = g.now().Add(cp.ttl)
	}
	// The cache's own goroutines commit and add the entry (no goroutine
	// of ours, nor a deadline: it answers on every path, ErrClosed at
	// Close); Close waits for the answers still due.
	done := make(chan struct{})
	g.stores.Add(1)
	route, id := call.Route, call.RequestID
	g.cache.StoreAsync(e, func(err error) {
		if err != nil {
			g.metrics.storeFailed()
			g.log.Warn("cache store failed", "route", route, "request_id", id, "err", err)
		}
		close(done)
		g.stores.Done()
	})
	// Wait a little, so that the client's next request usually finds the
	// entry; a slow disk or an eviction finishes in the background.
	select {
	case <-done:
	case <-g.waits.store.get().Done():
	}
}

// cacheWaits are the shared deadlines of the cache's stages: a look-up
// with the built-in embedder waits at most lookupTimeout for the cache's
// actors, a store at most storeWait for its commit. The request's own
// context is not merged in (that would cost the context this saves): a
// look-up whose client has gone still waits for a hanging cache until the
// shared deadline, as the answer it then writes is discarded.
type cacheWaits struct{ lookup, store sharedDeadline }

func newCacheWaits(storeWait time.Duration) *cacheWaits {
	return &cacheWaits{
		lookup: sharedDeadline{d: lookupTimeout, window: lookupTimeout / 50},
		store:  sharedDeadline{d: storeWait, window: storeWait / 8},
	}
}

// sharedDeadline hands out contexts that end between d and d+window after
// they are handed out: each is made once and handed out for window. A miss
// made a context with a timer for its look-up and a timer for its store's
// wait, about two microseconds of CPU at thousands of misses a second,
// where the deadlines only bound waits that almost never run out. They
// come from no request's context: only the cache's calls wait on them,
// which then do not end early with a departed client (they end within d
// anyway).
type sharedDeadline struct {
	d, window time.Duration
	cur       atomic.Pointer[deadlineCtx]
}

type deadlineCtx struct {
	ctx    context.Context
	cancel context.CancelFunc // its own timer calls it
	until  time.Time          // handed out before then
}

// get returns a context that ends at least d from now, and at most
// d+window. The clock is the real one (with its monotonic reading), never
// the gateway's: a test's frozen clock would hand out one context forever.
func (s *sharedDeadline) get() context.Context {
	now := time.Now()
	if c := s.cur.Load(); c != nil && now.Before(c.until) {
		return c.ctx
	}
	c := &deadlineCtx{until: now.Add(s.window)}
	c.ctx, c.cancel = context.WithTimeout(context.Background(), s.d+s.window)
	s.cur.Store(c)
	return c.ctx
}

// replayStream renders a stored chat.completion as the SSE stream a backend
// would have sent: a role chunk, the content in word-sized pieces, a finish
// chunk per choice, the usage chunk when asked for, then [DONE].
func replayStream(body []byte, withUsage bool) []byte {
	var c chatCompletion
	_ = json.Unmarshal(body, &c)
	type delta struct {
		Role    string  `json:"role,omitempty"`
		Content *string `json:"content,omitempty"`
	}
	type choice struct {
		Index        int     `json:"index"`
		Delta        delta   `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	}
	type chunk struct {
		ID                string          `json:"id"`
		Object            string          `json:"object"`
		Created           int64           `json:"created"`
		Model             string          `json:"model"`
		SystemFingerprint string          `json:"system_fingerprint,omitempty"`
		Choices           []choice        `json:"choices"`
		Usage             json.RawMessage `json:"usage,omitempty"`
	}
	var out []byte
	emit := func(ch chunk) {
		ch.ID, ch.Object, ch.Created, ch.Model, ch.SystemFingerprint = c.ID, "chat.completion.chunk", c.Created, c.Model, c.SystemFingerprint
		if ch.Choices == nil {
			ch.Choices = []choice{}
		}
		b, _ := json.Marshal(ch)
		out = openai.WriteDataEvent(out, b)
	}
	for _, ch := range c.Choices {
		empty := ""
		emit(chunk{Choices: []choice{{Index: ch.Index, Delta: delta{Role: cmp.Or(ch.Message.Role, "assistant"), Content: &empty}}}})
		for _, piece := range pieces(ch.Message.Content) {
			emit(chunk{Choices: []choice{{Index: ch.Index, Delta: delta{Content: &piece}}}})
		}
		fr := ch.FinishReason
		emit(chunk{Choices: []choice{{Index: ch.Index, FinishReason: &fr}}})
	}
	if withUsage && len(c.Usage) > 0 && !bytes.Equal(c.Usage, []byte("null")) {
		emit(chunk{Usage: c.Usage})
	}
	return openai.WriteDataEvent(out, []byte("[DONE]"))
}

// pieces cuts text into chunks of a few words, as a model streams it.
func pieces(text string) []string {
	const size = 24
	var out []string
	for len(text) > size {
		cut := strings.IndexByte(text[size:], ' ')
		if cut < 0 {
			break
		}
		out = append(out, text[:size+cut])
		text = text[size+cut:]
	}
	if text != "" {
		out = append(out, text)
	}
	return out
}

// SearchCache embeds messages as a chat request's look-up would and lists
// the k nearest entries of partition and route with their distances, for
// the admin API. The match guard is not applied: this shows what the index sees.
func (g *Gateway) SearchCache(ctx context.Context, route, partition string, msgs []openai.Message, k int) ([]index.SearchMatch, error) {
	if g.cache == nil {
		return nil, errors.New("the cache is not enabled")
	}
	d, ok := retainedDialog(msgs)
	if !ok {
		return nil, errors.New("messages: only text contents can be searched")
	}
	if d.text == "" {
		return nil, errors.New("messages hold no user or assistant text")
	}
	ectx, cancel := context.WithTimeout(ctx, g.cacheCfg.EmbedTimeout)
	defer cancel()
	vec, err := g.embedder.Embed(ectx, d.text)
	if err != nil {
		return nil, fmt.Errorf("embedding the messages: %w", err)
	}
	return g.cache.Search(ctx, index.Space{Partition: partition, Route: route}, vec, k), nil
}

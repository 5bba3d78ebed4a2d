package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/quota"
)

// Limiter is what the admit and settle stages need from token accounting.
// Implemented by *quota.Limiter; Reserve and Headroom may block briefly
// (they are messages to the limiter's actors) and honour ctx.
type Limiter interface {
	// ReserveWithin charges tokens to the consumer's counter key before the
	// call is forwarded, giving up after wait; Decision says whether it was
	// admitted.
	ReserveWithin(ctx context.Context, wait time.Duration, consumer, key string, tokens int64) (quota.Reservation, quota.Decision, error)
	// SettleAsync replaces a reservation by the actual charge, exactly
	// once, without waiting for the actor: the answer is not held for it.
	SettleAsync(r quota.Reservation, actual int64)
	// Headroom reads the counter key's TPM limit and what is left, charging nothing.
	Headroom(ctx context.Context, consumer, key string) (quota.Decision, error)
	// Unlimited reports whether the consumer has no limit at all (no TPM,
	// no quota, no period) right now: nothing can refuse its calls.
	Unlimited(consumer string) bool
}

// spareReserver is a Limiter that can reserve without a round trip to its
// actors when that leaves the consumer far from its limits (implemented by
// *quota.Limiter).
type spareReserver interface {
	// ReserveSpare reserves tokens only if that needs no round trip and
	// leaves the counter under half of its limits; false: nothing reserved.
	ReserveSpare(consumer, key string, tokens int64) (quota.Reservation, quota.Decision, bool)
	// Shrink brings what such a reservation holds down to tokens before it
	// is settled, without waiting for the actors.
	Shrink(r quota.Reservation, tokens int64) bool
}

// bounder is a wire format that can bound its estimate without counting.
type bounder interface {
	// bound is at least estimate's total, from byte lengths alone.
	bound(g *Gateway, call *Call) (total int64, ok bool)
}

// admitTimeout bounds a call to the limiter: a reservation takes
// microseconds, and a limiter that cannot answer in this time is treated as
// failed (the call is admitted without limits) rather than holding requests.
const admitTimeout = 250 * time.Millisecond

// maxAllowance caps a completion allowance so an absurd max_tokens cannot
// overflow the estimate; any such request is refused as larger than the limit.
const maxAllowance = 1 << 40

// admission is the admit stage's result for one call.
type admission struct {
	tokens   int64 // reserved: prompt estimate + completion allowance
	prompt   int64 // the prompt estimate alone
	res      quota.Reservation
	reserved bool
	limit    int64 // TPM, 0 = none
	remain   int64
	// money is the reservation of the estimate's cost (micro-dollars)
	// against the consumer's money budget, when it has one and the route a price.
	money         quota.Reservation
	moneyReserved bool
	// deferred: prompt and tokens were not counted at admission (see
	// admit); exchange.estimate counts them if settling needs them.
	deferred bool
	// bounded: tokens is an upper bound of the estimate, reserved without
	// counting (see reserveBound); early counts the prompt beside the
	// upstream call, and exchange.estimate reads it for settling.
	bounded bool
	early   *earlyCount
	// bound is the upper bound reserved (0: none). Once exchange.estimate
	// has read the count, tokens and remain are counting first's: tokens
	// the estimate, remain what reserving it would have left.
	bound int64
}

// setHeaders writes the consumer's TPM headers (SPEC §4) when it has a limit.
func (a *admission) setHeaders(h http.Header) {
	if a.limit <= 0 {
		return
	}
	setInts(h, []string{headerLimitTokensKey, headerRemainTokensKey}, a.limit, max(a.remain, 0))
}

// LimitHeaders writes the consumer's TPM headers (SPEC §4) for an answer
// that charges nothing: a hit, a refused or invalid request, a listing.
// reqHeader is the client's request header (the end-user id); route may be
// "". A limiter that cannot answer in time leaves the headers out.
func (g *Gateway) LimitHeaders(ctx context.Context, h http.Header, c *Consumer, reqHeader http.Header, route string) {
	if g.limiter == nil || c == nil {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, admitTimeout)
	defer cancel()
	key := g.counterKey(&Call{Consumer: c, Header: reqHeader, Route: route})
	if route == "" && c.CounterKey == config.CounterRoute {
		key = "" // no route to name: the consumer's own counter
	}
	if dec, err := g.limiter.Headroom(lctx, c.Name, key); err == nil {
		(&admission{limit: dec.Limit, remain: dec.Remaining}).setHeaders(h)
	}
}

// counterKey names the counter the consumer's limits apply to for this call.
func (g *Gateway) counterKey(call *Call) string {
	c := call.Consumer
	switch c.CounterKey {
	case config.CounterRoute:
		return c.Name + "/route:" + call.Route
	case config.CounterUser:
		if u := g.user(call); u != "" {
			return c.Name + "/user:" + u
		}
	}
	return ""
}

// estimate returns the prompt estimate and the total reservation for call.
func (g *Gateway) estimate(call *Call) (prompt, total int64) {
	return wireOf(call).estimate(g, call)
}

// admit reserves the call's estimate. A refusal is returned as the error to
// answer with; a limiter failure admits the call unlimited (and is logged).
func (g *Gateway) admit(ctx context.Context, call *Call) (admission, *openai.Error) {
	var a admission
	if g.limiter == nil || call.Consumer == nil {
		if rt := g.routes[call.Route]; rt != nil && rt.metered {
			// Only the backends' capacity steering needs the estimate.
			a.prompt, a.tokens = g.estimate(call)
		}
		return a, nil
	}
	rt := g.routes[call.Route]
	// A consumer without any limit or budget, on a route that does not
	// steer by the estimate (no backend tpm, one backend per group), needs
	// no estimate before the call:
	// nothing can refuse it (its reservation is the limiter's unmetered
	// one, made without a round trip) and it is settled to the reply's
	// usage. The prompt is counted only if settling needs it (a reply
	// without usage) or a trace records it.
	a.deferred = !g.budgets[call.Consumer.Name] && (rt == nil || !rt.steers) && g.tracer == nil && g.limiter.Unlimited(call.Consumer.Name)
	if !a.deferred && g.reserveBound(call, rt, &a) {
		return a, nil
	}
	if !a.deferred {
		a.prompt, a.tokens = g.estimate(call)
	}
	res, d, err := g.limiter.ReserveWithin(ctx, admitTimeout, call.Consumer.Name, g.counterKey(call), a.tokens)
	if err != nil {
		g.log.Warn("quota reservation failed; admitting without limits", "consumer", call.Consumer.Name, "request_id", call.RequestID, "err", err)
		return a, nil
	}
	a.limit, a.remain = d.Limit, d.Remaining
	if !d.Allowed {
		g.metrics.rejected(d.Reason)
		return a, refusal(call, a.tokens, g.allowanceNote(call), d, g.now())
	}
	a.res, a.reserved = res, true
	if e := g.admitBudget(ctx, call, &a); e != nil {
		// Refused by the money budget: the tokens were not spent.
		g.limiter.SettleAsync(a.res, 0)
		a.res, a.reserved = quota.Reservation{}, false
		return a, e
	}
	return a, nil
}

// reserveBound reserves an upper bound of the call's estimate (chat and
// embeddings; see bounder), from byte
// lengths alone, when the limiter can do so without a round trip to its
// actors and with the consumer far from its limits (see
// quota.Limiter.ReserveSpare), and starts counting the prompt beside the
// upstream call (countBeside): counting is then off the request's path,
// and settling charges exactly what it would have. Only for a whole
// (non-streamed) answer, whose headers are written after settling, and for
// a consumer and route that need nothing else of the estimate before the
// call: no money budget, no backend tpm to steer by, no trace to record it.
// Near a limit, where a bound larger than the estimate could refuse
// something, the limiter declines and admit counts first as before.
func (g *Gateway) reserveBound(call *Call, rt *route, a *admission) bool {
	sr, ok := g.limiter.(spareReserver)
	b, bok := wireOf(call).(bounder)
	if !ok || !bok || call.Stream || g.budgets[call.Consumer.Name] || rt == nil || rt.steers || g.tracer != nil {
		return false
	}
	total, ok := b.bound(g, call)
	if !ok {
		return false
	}
	res, d, ok := sr.ReserveSpare(call.Consumer.Name, g.counterKey(call), total)
	if !ok {
		return false
	}
	a.tokens, a.res, a.reserved, a.limit, a.remain, a.bounded, a.bound = total, res, true, d.Limit, d.Remaining, true, total
	a.early = g.countBeside(call, sr, res)
	return true
}

// earlyCount is a call's prompt estimate, counted on a goroutine of its own
// while the call goes upstream.
type earlyCount struct {
	// state: earlyWaiting until the goroutine starts counting
	// (earlyCounting) or the settlement takes the count over (earlyTaken);
	// earlyDone once prompt and total are written and the reservation
	// shrunk.
	state         atomic.Int32
	prompt, total int64
}

const (
	earlyWaiting = iota
	earlyCounting
	earlyDone
	earlyTaken
)

// countBeside starts counting call's estimate on a goroutine of its own,
// which then shrinks res, the bound's reservation, to the estimate: from
// microseconds after admission the window holds what counting first would
// have reserved, not the bound, for the rest of the upstream call. By the
// time the backend answers, the count is there. A reservation settled
// first (a backend that answered before the count) is not shrunk: Shrink
// and settling take each token once.
func (g *Gateway) countBeside(call *Call, sr spareReserver, res quota.Reservation) *earlyCount {
	ec := &earlyCount{}
	go func() {
		if !ec.state.CompareAndSwap(earlyWaiting, earlyCounting) {
			return // the answer came first: settling counted it
		}
		ec.prompt, ec.total = g.estimate(call)
		sr.Shrink(res, ec.total)
		ec.state.Store(earlyDone)
	}()
	return ec
}

// result is the estimate: the early count if it is done, else counted now.
// An answer that came before the goroutine started takes the count over
// (the goroutine then does nothing); one that came while it counts counts
// too, rather than wait, and leaves the goroutine's result unread.
func (ec *earlyCount) result(g *Gateway, call *Call) (prompt, total int64) {
	if ec.state.Load() == earlyDone {
		return ec.prompt, ec.total
	}
	ec.state.CompareAndSwap(earlyWaiting, earlyTaken)
	return g.estimate(call)
}

// estimate returns the admission's prompt estimate and its total
// reservation, counting them now if admit deferred them. A bounded
// admission's remain becomes what reserving the estimate would have left
// (the window holds the estimate once the early count has shrunk the
// reservation, or once it is settled).
func (x *exchange) estimate(g *Gateway) (prompt, total int64) {
	switch {
	case x.adm.deferred:
		x.adm.prompt, x.adm.tokens = g.estimate(x.call)
		x.adm.deferred = false
	case x.adm.bounded:
		bound := x.adm.tokens
		x.adm.prompt, x.adm.tokens = x.adm.early.result(g, x.call)
		x.adm.remain += bound - x.adm.tokens
		x.adm.bounded = false
	}
	return x.adm.prompt, x.adm.tokens
}

// setHeaders writes the admission's TPM headers (see admission.setHeaders)
// for an answer written before settling, as counting first would have
// written them: a bounded admission's with its estimate's remaining.
func (x *exchange) setHeaders(g *Gateway, h http.Header) {
	if x.adm.bounded && x.adm.limit > 0 {
		x.estimate(g)
	}
	x.adm.setHeaders(h)
}

// promptEstimate is the prompt part of estimate.
func (x *exchange) promptEstimate(g *Gateway) int64 {
	p, _ := x.estimate(g)
	return p
}

// costMicro is what tokens cost at price, in micro-dollars (a price per
// million tokens is that many micro-dollars per token); cached prompt
// tokens cost the cached price when the route has one.
func costMicro(p config.Price, prompt, completion, cached int64) float64 {
	cached = min(max(cached, 0), prompt)
	cachedPrice := p.CachedInputPer1M
	if cachedPrice == 0 {
		cachedPrice = p.InputPer1M
	}
	return float64(prompt-cached)*p.InputPer1M + float64(cached)*cachedPrice + float64(completion)*p.OutputPer1M
}

// admitBudget reserves the estimate's cost against the consumer's money
// budget: the prompt estimate and the completion allowance at the route's
// price, rounded up. A route without a price costs nothing and is not
// limited by money; a limiter failure admits (and is logged).
func (g *Gateway) admitBudget(ctx context.Context, call *Call, a *admission) *openai.Error {
	rt := g.routes[call.Route]
	if !g.budgets[call.Consumer.Name] || rt == nil {
		return nil
	}
	cost := int64(math.Ceil(costMicro(rt.price, a.prompt, max(a.tokens-a.prompt, 0), 0)))
	if cost <= 0 {
		return nil
	}
	res, d, err := g.limiter.ReserveWithin(ctx, admitTimeout, quota.BudgetName(call.Consumer.Name), "", cost)
	if err != nil {
		g.log.Warn("budget reservation failed; admitting without a money limit", "consumer", call.Consumer.Name, "request_id", call.RequestID, "err", err)
		return nil
	}
	if d.Allowed {
		a.money, a.moneyReserved = res, true
		return nil
	}
	g.metrics.rejected(d.Reason)
	return budgetRefusal(call, cost, d, g.now())
}

// budgetRefusal is the OpenAI-format answer to a money budget's refusal.
func budgetRefusal(call *Call, cost int64, d quota.Decision, now time.Time) *openai.Error {
	who := call.Consumer.Name
	switch d.Reason {
	case quota.ReasonTooLarge:
		return &openai.Error{Status: http.StatusTooManyRequests, Type: "tokens", Code: openai.CodeRateLimitExceeded,
			Header:  http.Header{http.CanonicalHeaderKey(HeaderShouldRetry): {"false"}},
			Message: fmt.Sprintf("This request costs an estimated $%.6f at route '%s''s price, more than the whole budget of consumer '%s' for the period; it can never be admitted. Shorten the prompt or set a lower output limit.", float64(cost)/quota.MicroUSD, call.Route, who)}
	case quota.ReasonQuota:
		wait := d.RetryAfter
		if !d.QuotaResetsAt.IsZero() {
			wait = d.QuotaResetsAt.Sub(now)
		}
		e := &openai.Error{Status: http.StatusForbidden, Type: "insufficient_quota", Code: openai.CodeQuotaExceeded,
			Message: fmt.Sprintf("Consumer '%s' has used its budget in US dollars for this period, or what is left of it cannot hold this request's estimated $%.6f; it resets at %s.", who, float64(cost)/quota.MicroUSD, d.QuotaResetsAt.UTC().Format(time.RFC3339))}
		e.Header = retryHeaders(wait)
		e.Header.Set(HeaderShouldRetry, "false")
		return e
	default: // share: this node's part of what the cluster has left is in use
		e := &openai.Error{Status: http.StatusTooManyRequests, Type: "tokens", Code: openai.CodeRateLimitExceeded,
			Message: fmt.Sprintf("Consumer '%s' is close to its budget across the gateway's nodes and this node's part of what remains is in use. Retry after %.2f seconds.", who, d.RetryAfter.Seconds())}
		e.Header = retryHeaders(d.RetryAfter)
		return e
	}
}

// maxTokenBytes is the longest token, in bytes, of every tiktoken encoding
// the gateway counts with (runs of 128 spaces in o200k_base and cl100k_base):
// a text of n bytes is at least n/128 tokens, whatever it says.
const maxTokenBytes = 128

// floorMinBody is the body size from which admit bounds the prompt by its
// length before counting it: below, counting costs less than the look-up.
const floorMinBody = 64 << 10

// refuseByLength refuses a call whose prompt, by its byte length alone,
// cannot fit the consumer's TPM limit, before any token is counted: counting
// megabytes costs seconds of CPU that the refusal would waste.
func (g *Gateway) refuseByLength(ctx context.Context, call *Call) *openai.Error {
	floor, textBytes := promptFloor(call)
	return g.lengthRefusal(ctx, call.Consumer, floor, textBytes)
}

// RefuseByLength refuses, before body is decoded, a request of operation op
// whose prompt text alone (openai.ScanPromptFloor: one pass over the raw
// bytes) is more tokens than the consumer's TPM limit: decoding megabytes
// of JSON costs more than the answer. Bodies up to 64 KiB, consumers
// without a limit and a limiter that cannot answer are never refused here;
// the refusal is the one Serve's admission gives such a prompt after decoding.
// model is the body's "model" as the pass read it ("" if it could not), for
// naming the refused request's route.
func (g *Gateway) RefuseByLength(ctx context.Context, c *Consumer, op openai.Operation, body []byte) (model string, e *openai.Error) {
	if g.limiter == nil || c == nil || len(body) <= floorMinBody {
		return "", nil
	}
	f := openai.ScanPromptFloor(op, body)
	return f.Model, g.lengthRefusal(ctx, c, floorTokens(f.TextBytes, f.Tokens), f.TextBytes)
}

// floorTokens is the fewest tokens textBytes of text and pre pre-tokenized
// inputs can be.
func floorTokens(textBytes, pre int64) int64 {
	return pre + (textBytes+maxTokenBytes-1)/maxTokenBytes
}

// lengthRefusal refuses a prompt of at least floor tokens (textBytes of
// text) that is more than consumer c's TPM limit. The limit is the
// consumer's whatever its counter key, so no counter is named.
func (g *Gateway) lengthRefusal(ctx context.Context, c *Consumer, floor, textBytes int64) *openai.Error {
	if floor == 0 {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, admitTimeout)
	d, err := g.limiter.Headroom(rctx, c.Name, "")
	cancel()
	if err != nil || d.Limit <= 0 || floor <= d.Limit {
		return nil
	}
	g.metrics.rejected(quota.ReasonTooLarge)
	return &openai.Error{Status: http.StatusTooManyRequests, Type: "tokens", Code: openai.CodeRateLimitExceeded,
		Header: http.Header{http.CanonicalHeaderKey(HeaderShouldRetry): {"false"}},
		Message: fmt.Sprintf("This request's prompt is at least %d tokens by its length alone (%d bytes of text), more than its limit of %d tokens per minute allows consumer '%s'; it can never be admitted. Shorten the prompt.",
			floor, textBytes, d.Limit, c.Name)}
}

// promptFloor returns a lower bound on the call's prompt tokens from byte
// lengths alone, and the bytes of text it counted. Only text whose bytes are
// all tokens counts: string contents and inputs, not content parts (an image
// is bytes but few tokens).
func promptFloor(call *Call) (tokens, textBytes int64) {
	var pre int64 // pre-tokenized inputs: their length is their count
	switch {
	case call.Chat != nil:
		for _, m := range call.Chat.Messages {
			textBytes += stringBytesFloor(m.Content)
		}
	case call.Embeddings != nil:
		for _, in := range call.Embeddings.Inputs {
			textBytes += int64(len(in.Text))
			pre += int64(len(in.Tokens))
		}
	case call.Responses != nil:
		textBytes = stringBytesFloor(call.Responses.Input)
		if call.Responses.Instructions != nil && textBytes > 0 {
			// Counted as a system message only when the input is all text,
			// as a string input is; with images the raw input is counted alone.
			textBytes += int64(len(*call.Responses.Instructions))
		}
	}
	return floorTokens(textBytes, pre), textBytes
}

// stringBytesFloor is a lower bound on the decoded length of raw when it is
// a JSON string, else 0. An escape (at most 6 bytes, \uXXXX) decodes to at
// least one byte.
func stringBytesFloor(raw json.RawMessage) int64 {
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[0] != '"' {
		return 0
	}
	n := int64(len(raw)-2) - 5*int64(bytes.Count(raw, []byte{'\\'}))
	return max(n, 0)
}

// HeaderShouldRetry tells the official SDKs whether retrying can help.
const HeaderShouldRetry = "x-should-retry"

// allowanceNote says what the estimate's completion part is, in words for a
// refusal: the client's own limit, or the default allowance it did not set.
func (g *Gateway) allowanceNote(call *Call) string {
	if call.Chat != nil && call.Chat.CompletionAllowance() > 0 {
		return "prompt plus max_tokens"
	}
	if call.Responses != nil && call.Responses.MaxOutputTokens != nil {
		return "input plus max_output_tokens"
	}
	if call.Chat == nil && call.Responses == nil {
		return "prompt"
	}
	return fmt.Sprintf("prompt plus the default completion allowance of %d tokens, reserved because the request sets no output limit", g.limits.DefaultCompletionTokens)
}

// refusal is the OpenAI-format answer to a denied reservation.
func refusal(call *Call, need int64, allowance string, d quota.Decision, now time.Time) *openai.Error {
	who := call.Consumer.Name
	switch d.Reason {
	case quota.ReasonTooLarge:
		limit := "its whole token quota for the period"
		if d.Limit > 0 && need > d.Limit {
			limit = fmt.Sprintf("its limit of %d tokens per minute", d.Limit)
		}
		// Retrying cannot cure it: the SDKs must not send it again.
		return &openai.Error{Status: http.StatusTooManyRequests, Type: "tokens", Code: openai.CodeRateLimitExceeded,
			Header:  http.Header{http.CanonicalHeaderKey(HeaderShouldRetry): {"false"}},
			Message: fmt.Sprintf("This request needs an estimated %d tokens (%s), more than %s allows consumer '%s'; it can never be admitted. Shorten the prompt or set a lower output limit (max_tokens, max_completion_tokens or max_output_tokens).", need, allowance, limit, who)}
	case quota.ReasonQuota:
		wait := d.RetryAfter
		if !d.QuotaResetsAt.IsZero() {
			wait = d.QuotaResetsAt.Sub(now)
		}
		e := &openai.Error{Status: http.StatusForbidden, Type: "insufficient_quota", Code: openai.CodeQuotaExceeded,
			Message: fmt.Sprintf("Consumer '%s' has used its token quota for this period, or what is left of it cannot hold this request's estimated %d tokens; it resets at %s.", who, need, d.QuotaResetsAt.UTC().Format(time.RFC3339))}
		e.Header = retryHeaders(wait)
		e.Header.Set(HeaderShouldRetry, "false") // not within any SDK's retry budget
		return e
	case quota.ReasonShare:
		e := &openai.Error{Status: http.StatusTooManyRequests, Type: "tokens", Code: openai.CodeRateLimitExceeded,
			Message: fmt.Sprintf("Consumer '%s' is close to its limit across the gateway's nodes and this node's part of what remains is in use: this request needs an estimated %d tokens. Retry after %.2f seconds.", who, need, d.RetryAfter.Seconds())}
		e.Header = retryHeaders(d.RetryAfter)
		return e
	default:
		e := &openai.Error{Status: http.StatusTooManyRequests, Type: "tokens", Code: openai.CodeRateLimitExceeded,
			Message: fmt.Sprintf("Rate limit of %d tokens per minute exceeded for consumer '%s': this request needs an estimated %d tokens. Retry after %.1f seconds.", d.Limit, who, need, d.RetryAfter.Seconds())}
		e.Header = retryHeaders(d.RetryAfter)
		return e
	}
}

// retryHeaders gives Retry-After and, as Azure does, retry-after-ms.
func retryHeaders(wait time.Duration) http.Header {
	wait = max(wait, time.Millisecond)
	return http.Header{
		"Retry-After":    {retryAfterSeconds(wait)},
		"Retry-After-Ms": {strconv.FormatInt(int64((wait+time.Millisecond-1)/time.Millisecond), 10)},
	}
}

// retryAfterSeconds is a wait in whole seconds, rounded up.
func retryAfterSeconds(wait time.Duration) string {
	return strconv.FormatInt(int64((wait+time.Second-1)/time.Second), 10)
}

// settle charges the call's actual usage (nil: nothing was consumed) and
// returns the charge. A call that reached a backend is charged at least its
// prompt estimate: the backend spent it even if the client left before the
// answer or the answer never came.
//
// The charge is queued to the limiter without waiting (SettleAsync), so the
// answer is never held for the actor; the headroom the headers report is the
// admission's, corrected by this call's charge (Decision.AfterSettle). The
// settlement is queued before the answer is written, so the client's next
// request is admitted against it; a crash loses it only as it loses any
// counter change since the limiter's last snapshot.
//
// An admission that deferred its estimate (see admit) is settled to the
// reply's own usage as it is; the prompt is counted only when there is no
// usage to settle to.
func (g *Gateway) settle(_ context.Context, x *exchange, u *usage) int64 {
	if x.reached {
		if u == nil {
			u = &usage{Prompt: x.promptEstimate(g)}
		} else if !x.adm.deferred {
			if short := x.promptEstimate(g) - u.total(); short > 0 {
				v := *u
				v.Prompt += short
				v.Total = v.Prompt + v.Completion
				u = &v
			}
		}
	}
	var actual int64
	if u != nil {
		actual = u.total()
		g.metrics.tokens(x.call.Consumer, x.call.Route, u.Prompt, u.Completion)
	}
	if x.adm.moneyReserved {
		var cost float64
		if rt := g.routes[x.call.Route]; rt != nil && u != nil {
			var cached int64
			if u.Details != nil {
				cached = u.Details.Cached
			}
			cost = costMicro(rt.price, u.Prompt, u.Completion, cached)
		}
		g.limiter.SettleAsync(x.adm.money, int64(math.Round(min(cost, quota.MaxTokens))))
		x.adm.money, x.adm.moneyReserved = quota.Reservation{}, false
	}
	if !x.adm.reserved {
		return actual
	}
	// Queued even when the client has gone: the tokens were spent.
	g.limiter.SettleAsync(x.adm.res, actual)
	reserved := x.adm.res.Tokens()
	if x.adm.bound > 0 {
		// remain is the bound's or, once estimate read the count, the
		// estimate's: tokens is the matching one.
		reserved = x.adm.tokens
	}
	d := quota.Decision{Limit: x.adm.limit, Remaining: x.adm.remain}.AfterSettle(reserved, actual)
	x.adm.res, x.adm.reserved = quota.Reservation{}, false
	x.adm.remain = d.Remaining
	return actual
}

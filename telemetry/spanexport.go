package telemetry

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// spanExport is the end of the trace pipeline: an sdktrace.SpanProcessor
// that encodes each ended span of a sampled trace straight into OTLP
// protobuf as it ends, and a goroutine that posts what is pending to the
// collector's /v1/traces (OTLP/HTTP) every interval, or sooner once
// flushBytes are pending.
//
// It replaces the SDK's batch span processor and OTLP/HTTP exporter, which
// keep every span's snapshot until its batch goes (more for the GC to walk),
// hand each span to the batching goroutine over a channel, and turn each
// into a tree of generated protobuf structs (an allocation per attribute
// value) marshalled by reflection. With every request traced those were the
// largest part of what tracing cost a request in a CPU profile; here a span
// is encoded once, into a buffer that is reused.
//
// Like the SDK's, it never delays a request: past maxPending bytes (a
// collector down or slow) spans are dropped and counted. A batch the
// collector answers with 429, 502, 503 or 504, or that cannot be sent
// (transport error, timeout), is retried as the OTLP/HTTP specification and
// the SDK's exporter do: exponential backoff with jitter, at least the
// collector's Retry-After, for at most retryMaxElapsed; while it waits, new
// spans keep being encoded, its bytes counting against maxPending. Any
// other refusal drops the batch at once. Drops, and the spans a collector
// reports rejected in a partial success, are counted and logged.
type spanExport struct {
	url        string
	client     *http.Client
	timeout    time.Duration
	interval   time.Duration
	flushBytes int
	maxPending int
	userAgent  string
	headers    http.Header // OTEL_EXPORTER_OTLP_(TRACES_)HEADERS
	gzip       bool        // OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION=gzip
	log        *slog.Logger

	scratch sync.Pool // *[]byte: one span's encoding

	mu       sync.Mutex
	groups   []*spanGroup // by resource and scope: one in practice
	pending  int          // bytes in the groups
	held     int          // bytes of the batch being sent or waiting for a retry
	stopped  bool
	kicked   bool          // a flush was asked for since the last one
	kick     chan struct{} // buffered 1: flushBytes reached
	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	ctx      context.Context // the background flushes'; cancelled when Shutdown's ctx ends first
	cancel   context.CancelFunc

	retryInitial, retryMaxInterval, retryMaxElapsed time.Duration

	flushMu sync.Mutex // one flush at a time; what follows is its own
	body    []byte
	retry   *exportBatch // a batch waiting for its next attempt
	zbuf    bytes.Buffer // the gzipped body
	zw      *gzip.Writer
	reason  string // why spans were last dropped, for the report

	dropped    atomic.Int64 // spans lost since the last report
	overBound  atomic.Bool  // some of them past maxPending
	lastReport time.Time    // under flushMu
}

// spanGroup is the pending spans of one resource and instrumentation scope.
type spanGroup struct {
	res   *resource.Resource
	scope instrumentation.Scope
	head  []byte // the Resource and scope, encoded once
	spans []byte // ScopeSpans.spans fields, each tagged and length-prefixed
	n     int    // spans in spans
	spare []byte // the buffer of the batch before, for reuse
}

// Span export defaults.
const (
	spanFlushInterval = 2 * time.Second
	spanFlushBytes    = 512 << 10 // about 2,000 spans of a request's kind
	spanMaxPending    = 8 << 20
	dropReportEvery   = time.Minute

	// The SDK exporter's retry policy.
	retryInitial     = 5 * time.Second
	retryMaxInterval = 30 * time.Second
	retryMaxElapsed  = time.Minute
)

// exportBatch is one ExportTraceServiceRequest being delivered.
type exportBatch struct {
	body     []byte
	spans    int
	first    time.Time     // the first attempt
	interval time.Duration // the backoff's current interval
	next     time.Time     // when the next attempt is due
}

func newSpanExport(url string, timeout time.Duration, version string, headers http.Header, log *slog.Logger) *spanExport {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &spanExport{
		url:          url,
		client:       &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		timeout:      timeout,
		interval:     spanFlushInterval,
		flushBytes:   spanFlushBytes,
		maxPending:   spanMaxPending,
		retryInitial: retryInitial, retryMaxInterval: retryMaxInterval, retryMaxElapsed: retryMaxElapsed,
		userAgent: "llmgate/" + version,
		headers:   headers,
		log:       log,
		kick:      make(chan struct{}, 1),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	go e.run()
	return e
}

// OnStart implements sdktrace.SpanProcessor: nothing to do.
func (e *spanExport) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd implements sdktrace.SpanProcessor: s is encoded and queued.
func (e *spanExport) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	bp, _ := e.scratch.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	body := appendSpan((*bp)[:0], s)
	size := protowire.SizeTag(fScopeSpansSpans) + protowire.SizeBytes(len(body))
	res, scope := s.Resource(), s.InstrumentationScope()

	e.mu.Lock()
	if e.stopped || e.pending+e.held+size > e.maxPending {
		e.mu.Unlock()
		e.dropped.Add(1)
		if !e.overBound.Load() {
			e.overBound.Store(true)
		}
		*bp = body
		e.scratch.Put(bp)
		return
	}
	g := e.group(res, scope)
	g.spans = protowire.AppendTag(g.spans, fScopeSpansSpans, protowire.BytesType)
	g.spans = protowire.AppendBytes(g.spans, body)
	g.n++
	e.pending += size
	kick := e.pending >= e.flushBytes && !e.kicked
	if kick {
		e.kicked = true
	}
	e.mu.Unlock()
	*bp = body
	e.scratch.Put(bp)
	if kick {
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}
}

// group returns the pending group of res and scope, made if new (e.mu held).
func (e *spanExport) group(res *resource.Resource, scope instrumentation.Scope) *spanGroup {
	for _, g := range e.groups {
		if g.res == res && g.scope == scope {
			return g
		}
	}
	g := &spanGroup{res: res, scope: scope}
	if res != nil {
		r := appendResource(nil, res)
		g.head = protowire.AppendTag(g.head, fResourceSpansResource, protowire.BytesType)
		g.head = protowire.AppendBytes(g.head, r)
	}
	e.groups = append(e.groups, g)
	return g
}

// run flushes every interval, when OnEnd asks, and when a retry is due,
// until Shutdown.
func (e *spanExport) run() {
	defer close(e.done)
	t := time.NewTicker(e.interval)
	defer t.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-e.quit:
			return
		case <-t.C:
		case <-e.kick:
		case <-retry.C:
		}
		next, _ := e.flush(e.ctx, false)
		retry.Stop()
		if !next.IsZero() {
			retry.Reset(time.Until(next))
		}
	}
}

// flush sends a batch waiting for a retry if it is due (or final), then, if
// none is left waiting, what is pending as one request. final (ForceFlush,
// Shutdown) waits for retries within ctx instead of leaving them for later.
// It returns when a batch left waiting is due again.
func (e *spanExport) flush(ctx context.Context, final bool) (time.Time, error) {
	e.flushMu.Lock()
	defer e.flushMu.Unlock()
	var err error
	if r := e.retry; r != nil {
		if !final && time.Now().Before(r.next) {
			return r.next, nil
		}
		e.retry = nil
		err = e.deliver(ctx, r, final)
		if e.retry != nil {
			e.report(err)
			return e.retry.next, err
		}
	}
	if r := e.take(); r != nil {
		err = errors.Join(err, e.deliver(ctx, r, final))
	}
	e.report(err)
	if e.retry != nil {
		return e.retry.next, err
	}
	return time.Time{}, err
}

// take encodes what is pending into one request's body (flushMu held).
func (e *spanExport) take() *exportBatch {
	type batch struct {
		g     *spanGroup
		spans []byte
		n     int
	}
	var taken []batch
	e.mu.Lock()
	for _, g := range e.groups {
		if g.n > 0 {
			taken = append(taken, batch{g, g.spans, g.n})
			g.spans, g.spare, g.n = g.spare[:0], nil, 0
		}
	}
	e.held, e.pending, e.kicked = e.pending, 0, false
	e.mu.Unlock()
	if len(taken) == 0 {
		return nil
	}

	b := e.body[:0]
	e.body = nil // the batch's until delivered
	spans := 0
	for _, t := range taken {
		scope := appendScope(nil, t.g.scope)
		ss := len(t.spans) + stringSize(fScopeSpansSchemaURL, t.g.scope.SchemaURL)
		if t.g.scope != (instrumentation.Scope{}) {
			ss += protowire.SizeTag(fScopeSpansScope) + protowire.SizeBytes(len(scope))
		}
		schema := ""
		if t.g.res != nil {
			schema = t.g.res.SchemaURL()
		}
		rs := len(t.g.head) + protowire.SizeTag(fResourceSpansScopeSpans) + protowire.SizeBytes(ss) + stringSize(fResourceSpansSchemaURL, schema)
		b = protowire.AppendTag(b, fRequestResourceSpans, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(rs))
		b = append(b, t.g.head...)
		b = protowire.AppendTag(b, fResourceSpansScopeSpans, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(ss))
		if t.g.scope != (instrumentation.Scope{}) {
			b = protowire.AppendTag(b, fScopeSpansScope, protowire.BytesType)
			b = protowire.AppendBytes(b, scope)
		}
		b = append(b, t.spans...)
		b = appendString(b, fScopeSpansSchemaURL, t.g.scope.SchemaURL)
		b = appendString(b, fResourceSpansSchemaURL, schema)
		spans += t.n
	}
	// The spans' buffers go back for the next batch, unless a backlog made
	// them large.
	e.mu.Lock()
	for _, t := range taken {
		if t.g.spare == nil && cap(t.spans) <= 2*e.flushBytes {
			t.g.spare = t.spans[:0]
		}
	}
	e.mu.Unlock()
	return &exportBatch{body: b, spans: spans, first: time.Now(), interval: e.retryInitial}
}

// deliver posts r. A failure worth retrying leaves r in e.retry for later,
// or, when final, is retried within ctx; any other failure drops r (flushMu
// held).
func (e *spanExport) deliver(ctx context.Context, r *exportBatch, final bool) error {
	for {
		err := e.post(ctx, r.body)
		delay, again := e.backoff(r, err)
		if again && e.ctx.Err() == nil && ctx.Err() == nil && !final {
			r.next = time.Now().Add(delay)
			e.retry = r
			return err
		}
		if again && final && ctx.Err() == nil {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
				t.Stop()
				err = errors.Join(err, ctx.Err())
			}
		}
		if err != nil {
			e.dropped.Add(int64(r.spans))
			e.reason = err.Error()
		}
		e.mu.Lock()
		e.held = 0
		e.mu.Unlock()
		if cap(r.body) <= 4*e.flushBytes {
			e.body = r.body[:0]
		}
		return err
	}
}

// backoff says whether err is worth another attempt of r and after how
// long: the backoff's interval with ±50 % jitter, at least the collector's
// Retry-After, never past retryMaxElapsed since the first attempt.
func (e *spanExport) backoff(r *exportBatch, err error) (time.Duration, bool) {
	var re *retryableError
	if err == nil || !errors.As(err, &re) {
		return 0, false
	}
	delay := time.Duration(float64(r.interval) * (0.5 + rand.Float64()))
	r.interval = min(time.Duration(float64(r.interval)*1.5), e.retryMaxInterval)
	delay = max(delay, re.after)
	if time.Since(r.first)+delay > e.retryMaxElapsed {
		return 0, false
	}
	return delay, true
}

// retryableError is a failed attempt worth another: a transport error, a
// timeout, or 429/502/503/504, with the collector's Retry-After if any.
type retryableError struct {
	err   error
	after time.Duration
}

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

// report logs what was dropped, at most once every dropReportEvery (flushMu held).
func (e *spanExport) report(err error) {
	if n := e.dropped.Load(); n > 0 && time.Since(e.lastReport) >= dropReportEvery {
		e.lastReport = time.Now()
		e.dropped.Add(-n)
		var why []string
		if e.overBound.Swap(false) {
			why = append(why, fmt.Sprintf("more than %d bytes pending", e.maxPending))
		}
		if e.reason != "" {
			why = append(why, e.reason)
		} else if err != nil {
			why = append(why, err.Error())
		}
		reason := strings.Join(why, "; ")
		e.reason = ""
		e.log.Warn("telemetry: OTLP trace export: spans dropped", "spans", n, "error", reason)
	}
}

// post sends one ExportTraceServiceRequest. A failure worth retrying is a
// *retryableError.
func (e *spanExport) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	if e.gzip {
		e.zbuf.Reset()
		if e.zw == nil {
			e.zw = gzip.NewWriter(&e.zbuf)
		} else {
			e.zw.Reset(&e.zbuf)
		}
		_, _ = e.zw.Write(body) // to memory: cannot fail
		_ = e.zw.Close()
		body = e.zbuf.Bytes()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("telemetry: OTLP trace export: %w", err)
	}
	if e.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	for k, v := range e.headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", e.userAgent)
	resp, err := e.client.Do(req)
	if err != nil {
		return &retryableError{err: fmt.Errorf("telemetry: OTLP trace export: %w", err)}
	}
	defer resp.Body.Close()
	// The answer is read whole (so that the connection is kept); a success's
	// may be a partial one.
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		if n, msg := partialSuccess(answer); n > 0 {
			e.dropped.Add(n)
			e.reason = fmt.Sprintf("the collector rejected %d spans: %s", n, msg)
		}
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusBadGateway ||
		resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusGatewayTimeout:
		return &retryableError{err: fmt.Errorf("telemetry: OTLP trace export to %s: %s", e.url, resp.Status),
			after: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	default:
		return fmt.Errorf("telemetry: OTLP trace export to %s: %s", e.url, resp.Status)
	}
}

// partialSuccess reads ExportTraceServiceResponse.partial_success: the
// spans the collector rejected and why (0 when none, or not protobuf).
func partialSuccess(b []byte) (rejected int64, msg string) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, ""
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			ps, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, ""
			}
			b = b[n:]
			for len(ps) > 0 {
				num, typ, n := protowire.ConsumeTag(ps)
				if n < 0 {
					return 0, ""
				}
				ps = ps[n:]
				switch {
				case num == 1 && typ == protowire.VarintType:
					v, n := protowire.ConsumeVarint(ps)
					if n < 0 {
						return 0, ""
					}
					rejected, ps = int64(v), ps[n:]
				case num == 2 && typ == protowire.BytesType:
					v, n := protowire.ConsumeBytes(ps)
					if n < 0 {
						return 0, ""
					}
					msg, ps = strings.ToValidUTF8(string(v), "\uFFFD"), ps[n:]
				default:
					n := protowire.ConsumeFieldValue(num, typ, ps)
					if n < 0 {
						return 0, ""
					}
					ps = ps[n:]
				}
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, ""
		}
		b = b[n:]
	}
	return max(rejected, 0), msg
}

// retryAfter reads a Retry-After header: seconds or an HTTP date (0 when
// absent or malformed).
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return max(time.Duration(s)*time.Second, 0)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// ForceFlush implements sdktrace.SpanProcessor: what is pending is sent now.
// A batch the collector asks to have again is retried within ctx.
func (e *spanExport) ForceFlush(ctx context.Context) error {
	_, err := e.flush(ctx, true)
	return err
}

// Shutdown implements sdktrace.SpanProcessor: later spans are dropped and
// what is pending is sent, retried as needed, within ctx.
func (e *spanExport) Shutdown(ctx context.Context) error {
	var err error
	e.stopOnce.Do(func() {
		close(e.quit)
		var late error
		select {
		case <-e.done:
		case <-ctx.Done():
			e.cancel() // a flush under way gives up: its spans are lost
			<-e.done
			late = fmt.Errorf("telemetry: OTLP trace export: shutdown: %w", ctx.Err())
		}
		e.cancel()
		e.mu.Lock()
		e.stopped = true
		e.mu.Unlock()
		_, ferr := e.flush(ctx, true)
		err = errors.Join(late, ferr)
		e.client.CloseIdleConnections()
	})
	return err
}

// otlpHeaders parses the OpenTelemetry exporters' headers variable
// (OTEL_EXPORTER_OTLP_HEADERS: "key=value,key2=value2", values
// percent-encoded), as the SDK's exporters do: a pair without "=", with a
// key that is not an HTTP token or a value that does not decode is skipped.
func otlpHeaders(s string) http.Header {
	h := http.Header{}
	for pair := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || !validHeaderKey(k) {
			continue
		}
		v, err := url.PathUnescape(v)
		if err != nil {
			continue
		}
		v = strings.TrimSpace(v)
		if strings.ContainsAny(v, "\r\n\x00") {
			continue
		}
		h.Set(k, v)
	}
	return h
}

// validHeaderKey reports whether k is an HTTP token (RFC 9110).
func validHeaderKey(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range []byte(k) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

package telemetry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
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
// collector down or slow) spans are dropped, and a batch the collector
// refuses or that cannot be sent is dropped, counted and logged.
type spanExport struct {
	url        string
	client     *http.Client
	timeout    time.Duration
	interval   time.Duration
	flushBytes int
	maxPending int
	userAgent  string
	headers    http.Header // OTEL_EXPORTER_OTLP_(TRACES_)HEADERS
	log        *slog.Logger

	scratch sync.Pool // *[]byte: one span's encoding

	mu       sync.Mutex
	groups   []*spanGroup // by resource and scope: one in practice
	pending  int          // bytes in the groups
	stopped  bool
	kicked   bool          // a flush was asked for since the last one
	kick     chan struct{} // buffered 1: flushBytes reached
	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	ctx      context.Context // the background flushes'; cancelled when Shutdown's ctx ends first
	cancel   context.CancelFunc

	flushMu sync.Mutex // one flush at a time; the body below is its own
	body    []byte

	dropped    atomic.Int64 // spans lost since the last report
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
)

func newSpanExport(url string, timeout time.Duration, version string, headers http.Header, log *slog.Logger) *spanExport {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &spanExport{
		url:        url,
		client:     &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		timeout:    timeout,
		interval:   spanFlushInterval,
		flushBytes: spanFlushBytes,
		maxPending: spanMaxPending,
		userAgent:  "llmgate/" + version,
		headers:    headers,
		log:        log,
		kick:       make(chan struct{}, 1),
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
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
	if e.stopped || e.pending+size > e.maxPending {
		e.mu.Unlock()
		e.dropped.Add(1)
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

// run flushes every interval, and when OnEnd asks, until Shutdown.
func (e *spanExport) run() {
	defer close(e.done)
	t := time.NewTicker(e.interval)
	defer t.Stop()
	for {
		select {
		case <-e.quit:
			return
		case <-t.C:
		case <-e.kick:
		}
		ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
		_ = e.flush(ctx)
		cancel()
	}
}

// flush posts what is pending as one request.
func (e *spanExport) flush(ctx context.Context) error {
	e.flushMu.Lock()
	defer e.flushMu.Unlock()
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
	e.pending, e.kicked = 0, false
	e.mu.Unlock()
	if len(taken) == 0 {
		return nil
	}

	b := e.body[:0]
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
	e.body = b
	// The spans' buffers go back for the next batch, unless a backlog made
	// them large.
	e.mu.Lock()
	for _, t := range taken {
		if t.g.spare == nil && cap(t.spans) <= 2*e.flushBytes {
			t.g.spare = t.spans[:0]
		}
	}
	e.mu.Unlock()

	err := e.post(ctx, b)
	if err != nil {
		e.dropped.Add(int64(spans))
	}
	if n := e.dropped.Load(); n > 0 && time.Since(e.lastReport) >= dropReportEvery {
		e.lastReport = time.Now()
		e.dropped.Add(-n)
		e.log.Warn("telemetry: OTLP trace export: spans dropped", "spans", n, "error", errString(err))
	}
	return err
}

// post sends one ExportTraceServiceRequest.
func (e *spanExport) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("telemetry: OTLP trace export: %w", err)
	}
	for k, v := range e.headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", e.userAgent)
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("telemetry: OTLP trace export: %w", err)
	}
	defer resp.Body.Close()
	// The answer (an ExportTraceServiceResponse, perhaps a partial success) is
	// read so that the connection is kept, and not decoded.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("telemetry: OTLP trace export to %s: %s", e.url, resp.Status)
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// ForceFlush implements sdktrace.SpanProcessor: what is pending is sent now.
func (e *spanExport) ForceFlush(ctx context.Context) error {
	return e.flush(ctx)
}

// Shutdown implements sdktrace.SpanProcessor: later spans are dropped and
// what is pending is sent (within ctx).
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
		err = errors.Join(late, e.flush(ctx))
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

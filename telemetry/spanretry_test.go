package telemetry

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracev1 "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// flaky is an OTLP/HTTP endpoint on loopback that answers its first
// `refuse` requests with status (and Retry-After when set), then 200; it
// keeps the bodies it accepted and the time of every request.
type flaky struct {
	mu         sync.Mutex
	refuse     int
	status     int
	retryAfter string
	answer     []byte // the body of a 200
	accepted   [][]byte
	times      []time.Time
}

func (f *flaky) serve(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.times = append(f.times, time.Now())
		if len(f.times) <= f.refuse {
			if f.retryAfter != "" {
				w.Header().Set("Retry-After", f.retryAfter)
			}
			w.WriteHeader(f.status)
			return
		}
		f.accepted = append(f.accepted, body)
		_, _ = w.Write(f.answer)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/v1/traces"
}

// spansSeen counts each span (by its "i" attribute) over the accepted bodies.
func (f *flaky) spansSeen(t *testing.T) map[int64]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[int64]int{}
	for _, body := range f.accepted {
		var m tracev1.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &m); err != nil {
			t.Fatalf("decoding an export: %v", err)
		}
		for _, rs := range m.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					seen[sp.Attributes[0].Value.GetIntValue()]++
				}
			}
		}
	}
	return seen
}

func endSpans(tp *sdktrace.TracerProvider, n int) {
	for i := range n {
		_, s := tp.Tracer("t").Start(context.Background(), "admission")
		s.SetAttributes(attribute.Int("i", i))
		s.End()
	}
}

func TestSpanExportRetriesWhatTheCollectorAsksAgain(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     int
		retryAfter string
		minGap     time.Duration // between the first attempt and the second
	}{
		{"503 retried with backoff", http.StatusServiceUnavailable, "", 0},
		{"429 waits the collector's Retry-After", http.StatusTooManyRequests, "1", 900 * time.Millisecond},
		{"502 retried", http.StatusBadGateway, "", 0},
		{"504 retried", http.StatusGatewayTimeout, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &flaky{refuse: 2, status: tc.status, retryAfter: tc.retryAfter}
			url := f.serve(t)
			var logs bytes.Buffer
			e := newSpanExport(url, 5*time.Second, "test", nil, slog.New(slog.NewTextHandler(&logs, nil)))
			e.flushBytes = 1 << 10
			e.retryInitial, e.retryMaxInterval = 20*time.Millisecond, 50*time.Millisecond
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e))
			endSpans(tp, 200)
			// The background export delivers everything, retries included,
			// before Shutdown is asked to.
			deadline := time.Now().Add(10 * time.Second)
			for len(f.spansSeen(t)) < 200 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if err := tp.Shutdown(context.Background()); err != nil {
				t.Fatalf("Shutdown = %v", err)
			}
			seen := f.spansSeen(t)
			if len(seen) != 200 {
				t.Errorf("the collector accepted %d distinct spans, want 200", len(seen))
			}
			for i, n := range seen {
				if n != 1 {
					t.Errorf("span %d accepted %d times", i, n)
				}
			}
			f.mu.Lock()
			attempts, times := len(f.times), f.times
			f.mu.Unlock()
			if attempts < 3 {
				t.Fatalf("%d requests: the refused batch was not retried", attempts)
			}
			if gap := times[1].Sub(times[0]); gap < tc.minGap {
				t.Errorf("retried after %v, before the collector's Retry-After %ss", gap, tc.retryAfter)
			}
			if e.dropped.Load() != 0 || strings.Contains(logs.String(), "dropped") {
				t.Errorf("spans reported dropped although all arrived: %q", logs.String())
			}
		})
	}
}

func TestSpanExportShutdownRetriesWithinItsContext(t *testing.T) {
	f := &flaky{refuse: 1, status: http.StatusServiceUnavailable}
	e := newSpanExport(f.serve(t), 5*time.Second, "test", nil, nil)
	e.retryInitial = 20 * time.Millisecond
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e))
	endSpans(tp, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if seen := f.spansSeen(t); len(seen) != 10 {
		t.Errorf("the collector accepted %d spans after a 503 at shutdown, want 10", len(seen))
	}
}

func TestSpanExportCollectorStayingDownDropsAndNeverBlocks(t *testing.T) {
	f := &flaky{refuse: 1 << 30, status: http.StatusServiceUnavailable}
	var logs bytes.Buffer
	e := newSpanExport(f.serve(t), 5*time.Second, "test", nil, slog.New(slog.NewTextHandler(&logs, nil)))
	e.flushBytes, e.maxPending = 1<<10, 8<<10
	e.retryInitial, e.retryMaxInterval, e.retryMaxElapsed = 10*time.Millisecond, 20*time.Millisecond, 150*time.Millisecond
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e))
	start := time.Now()
	for range 20 {
		endSpans(tp, 500)
		time.Sleep(20 * time.Millisecond)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("10000 spans with the collector down took %v", d)
	}
	// A batch is given up after retryMaxElapsed, so later ones are tried.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "spans dropped") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// One span more, below flushBytes, is still pending when Shutdown
	// starts: its flush is the one that must fail. Without it the
	// background loop may have dropped every batch already, and a Shutdown
	// with nothing left to send rightly reports nothing.
	endSpans(tp, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	err := tp.Shutdown(ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v past its context", d)
	}
	if err == nil {
		t.Error("Shutdown with the collector down returned no error")
	}
	if !strings.Contains(logs.String(), "spans dropped") || !strings.Contains(logs.String(), "503") {
		t.Errorf("no report of spans dropped for the 503s in the log: %q", logs.String())
	}
	f.mu.Lock()
	attempts := len(f.times)
	f.mu.Unlock()
	if attempts < 4 {
		t.Errorf("%d requests: the batches were not retried", attempts)
	}
	if len(f.spansSeen(t)) != 0 {
		t.Error("a collector answering 503 accepted spans")
	}
}

func TestSpanExportPartialSuccessIsCountedAndReported(t *testing.T) {
	answer, err := proto.Marshal(&tracev1.ExportTraceServiceResponse{PartialSuccess: &tracev1.ExportTracePartialSuccess{RejectedSpans: 2, ErrorMessage: "too old"}})
	if err != nil {
		t.Fatal(err)
	}
	f := &flaky{answer: answer}
	var logs bytes.Buffer
	e := newSpanExport(f.serve(t), 5*time.Second, "test", nil, slog.New(slog.NewTextHandler(&logs, nil)))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e))
	endSpans(tp, 5)
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatalf("ForceFlush = %v", err)
	}
	if !strings.Contains(logs.String(), "spans=2") || !strings.Contains(logs.String(), "too old") {
		t.Errorf("log %q does not report the 2 spans rejected and why", logs.String())
	}
	_ = tp.Shutdown(context.Background())
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name, in string
		want     time.Duration
	}{
		{"seconds", "7", 7 * time.Second},
		{"an HTTP date", now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{"a date past is no wait", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"negative seconds are no wait", "-3", 0},
		{"malformed is no wait", "soon", 0},
		{"absent", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryAfter(tc.in, now); got != tc.want {
				t.Errorf("retryAfter(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzPartialSuccess: any answer decodes without panicking, and one the
// generated types decode gives the same rejected count and message.
func FuzzPartialSuccess(f *testing.F) {
	for _, m := range []*tracev1.ExportTraceServiceResponse{
		{}, {PartialSuccess: &tracev1.ExportTracePartialSuccess{RejectedSpans: 3, ErrorMessage: "bad"}},
		{PartialSuccess: &tracev1.ExportTracePartialSuccess{ErrorMessage: "warning only"}},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte("not protobuf"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, msg := partialSuccess(b)
		var m tracev1.ExportTraceServiceResponse
		if proto.Unmarshal(b, &m) != nil {
			return
		}
		want := max(m.GetPartialSuccess().GetRejectedSpans(), 0)
		if n != want || msg != m.GetPartialSuccess().GetErrorMessage() {
			t.Fatalf("partialSuccess = %d %q, the generated types %d %q", n, msg, want, m.GetPartialSuccess().GetErrorMessage())
		}
	})
}

func TestSpanExportDropReportSaysWhy(t *testing.T) {
	answer, err := proto.Marshal(&tracev1.ExportTraceServiceResponse{PartialSuccess: &tracev1.ExportTracePartialSuccess{RejectedSpans: 1, ErrorMessage: "too old"}})
	if err != nil {
		t.Fatal(err)
	}
	f := &flaky{answer: answer}
	var logs bytes.Buffer
	e := newSpanExport(f.serve(t), 5*time.Second, "test", nil, slog.New(slog.NewTextHandler(&logs, nil)))
	e.maxPending = 300
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e))
	endSpans(tp, 20) // more than 300 bytes: some dropped past the bound
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatalf("ForceFlush = %v", err)
	}
	if !strings.Contains(logs.String(), "more than 300 bytes pending") || !strings.Contains(logs.String(), "too old") {
		t.Errorf("the report does not give both reasons (past the bound, rejected by the collector): %q", logs.String())
	}
	_ = tp.Shutdown(context.Background())
}

package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// OTLPOptions configure the OpenTelemetry export.
type OTLPOptions struct {
	// Endpoint is the collector's OTLP/HTTP base URL (http://host:4318);
	// traces go to {Endpoint}/v1/traces, metrics to {Endpoint}/v1/metrics.
	Endpoint string
	// Node and Version describe this process (service.instance.id, service.version).
	Node, Version string
	// MetricInterval is how often metrics are exported (default 30s).
	MetricInterval time.Duration
	// Timeout bounds one export request (default: OTEL_EXPORTER_OTLP_TIMEOUT
	// or 10s).
	Timeout time.Duration
	// SampleRatio is the share of new traces recorded (default 1); a
	// client's sampled flag in traceparent decides for its own traces.
	SampleRatio float64
	// Logger reports spans the export dropped (nil: not reported).
	Logger *slog.Logger
}

// OTLP owns the OpenTelemetry SDK's trace and meter providers of a node
// exporting over OTLP/HTTP. Spans are encoded as they end and exported in
// batches in the background (spanExport), metrics by the SDK's exporter: a
// collector that is down or slow drops spans (what is pending is bounded),
// never delays or fails a request.
type OTLP struct {
	tp     *sdktrace.TracerProvider
	spans  *spanExport // nil with given providers
	mp     *sdkmetric.MeterProvider
	tracer trace.Tracer

	tokens   metric.Int64Histogram
	duration metric.Float64Histogram
	requests metric.Int64Counter

	// sets caches the metrics' measurement options (their attribute sets)
	// by the values they hold: building a set (sorting, hashing) and its
	// options per record would cost more than the record.
	setsMu sync.RWMutex
	sets   map[setKey]*measurement
}

// setKey names one attribute set of the metrics: kind 'r' (llmgate.requests)
// or 'o' (the GenAI metrics, tokenType "" for the duration).
type setKey struct {
	kind                                  byte
	op, route, consumer, cache, tokenType string
	status                                int
}

// measurement is an attribute set's options, ready to pass as they are (a
// variadic call with a slice allocates nothing).
type measurement struct {
	add    []metric.AddOption
	record []metric.RecordOption
}

// maxCachedSets bounds the attribute-set cache; past it sets are built per record.
const maxCachedSets = 4096

func (t *OTLP) set(key setKey) *measurement {
	t.setsMu.RLock()
	m, ok := t.sets[key]
	t.setsMu.RUnlock()
	if ok {
		return m
	}
	kv := []attribute.KeyValue{attribute.String("gen_ai.operation.name", key.op), attribute.String("gen_ai.request.model", key.route)}
	switch {
	case key.kind == 'r':
		kv = append(kv, attribute.String("llmgate.consumer", key.consumer), attribute.Int("http.response.status_code", key.status),
			attribute.String("llmgate.cache", key.cache))
	case key.tokenType != "":
		kv = append(kv, attribute.String("gen_ai.token.type", key.tokenType))
	}
	opt := metric.WithAttributeSet(attribute.NewSet(kv...))
	m = &measurement{add: []metric.AddOption{opt}, record: []metric.RecordOption{opt}}
	t.setsMu.Lock()
	if t.sets == nil {
		t.sets = map[setKey]*measurement{}
	}
	if len(t.sets) < maxCachedSets {
		t.sets[key] = m
	}
	t.setsMu.Unlock()
	return m
}

// NewOTLP starts the exporters. It does not contact the collector.
func NewOTLP(ctx context.Context, o OTLPOptions) (*OTLP, error) {
	if o.MetricInterval <= 0 {
		o.MetricInterval = 30 * time.Second
	}
	if o.SampleRatio <= 0 || o.SampleRatio > 1 {
		o.SampleRatio = 1
	}
	endpoint := strings.TrimRight(o.Endpoint, "/")
	// New traces: all of them at ratio 1 without computing a ratio per span
	// (the same decision, less work).
	root := sdktrace.AlwaysSample()
	if o.SampleRatio < 1 {
		root = sdktrace.TraceIDRatioBased(o.SampleRatio)
	}
	// Headers, timeout, compression and TLS for the collector, from the
	// variables the SDK's exporters read; the metrics exporter reads them
	// itself.
	env, err := traceExportEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	metricOpts := []otlpmetrichttp.Option{otlpmetrichttp.WithEndpointURL(endpoint + "/v1/metrics")}
	if o.Timeout > 0 {
		env.timeout = o.Timeout
		metricOpts = append(metricOpts, otlpmetrichttp.WithTimeout(o.Timeout))
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", "llmgate"),
		attribute.String("service.version", o.Version),
		attribute.String("service.instance.id", o.Node),
	))
	if err != nil {
		return nil, fmt.Errorf("telemetry: otlp resource: %w", err)
	}
	me, err := otlpmetrichttp.New(ctx, metricOpts...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: otlp metric exporter: %w", err)
	}
	spans := newSpanExport(endpoint+"/v1/traces", env.timeout, o.Version, env.headers, o.Logger)
	spans.gzip = env.gzip
	spans.client.Transport.(*http.Transport).TLSClientConfig = env.tls
	t := &OTLP{
		spans: spans,
		tp: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithResource(res),
			sdktrace.WithSampler(sdktrace.ParentBased(root))),
		// No exemplars: requests are observed after their span has ended,
		// outside its context, so none would ever name a trace, and
		// offering each measurement to a reservoir costs allocations.
		mp: sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me, sdkmetric.WithInterval(o.MetricInterval))), sdkmetric.WithResource(res),
			sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter)),
	}
	t.tracer = t.tp.Tracer("github.com/llmgate/llmgate")
	if err := t.instruments(t.mp.Meter("github.com/llmgate/llmgate")); err != nil {
		return nil, err
	}
	return t, nil
}

// NewOTLPWith builds on given providers (tests: in-memory exporters).
func NewOTLPWith(tp *sdktrace.TracerProvider, mp *sdkmetric.MeterProvider) (*OTLP, error) {
	t := &OTLP{tp: tp, mp: mp, tracer: tp.Tracer("github.com/llmgate/llmgate")}
	return t, t.instruments(mp.Meter("github.com/llmgate/llmgate"))
}

func (t *OTLP) instruments(m metric.Meter) error {
	var errs [3]error
	// The GenAI semantic conventions' client metrics, seen from the gateway.
	t.tokens, errs[0] = m.Int64Histogram("gen_ai.client.token.usage", metric.WithUnit("{token}"),
		metric.WithDescription("Tokens used per request, by gen_ai.token.type (input, output)."),
		metric.WithExplicitBucketBoundaries(1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304))
	t.duration, errs[1] = m.Float64Histogram("gen_ai.client.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of a model request through the gateway."),
		metric.WithExplicitBucketBoundaries(0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92))
	t.requests, errs[2] = m.Int64Counter("llmgate.requests", metric.WithUnit("{request}"),
		metric.WithDescription("Data-plane requests by consumer, route, status and cache result."))
	if err := errors.Join(errs[:]...); err != nil {
		return fmt.Errorf("telemetry: otlp instruments: %w", err)
	}
	return nil
}

// Tracer is what the front end and the pipeline start spans with.
func (t *OTLP) Tracer() trace.Tracer { return t.tracer }

// Observe implements Observer: the request's OTLP metrics.
func (t *OTLP) Observe(ctx context.Context, r *Request) {
	route := r.Route
	if r.Refusal == "model_not_found" {
		route = otherLabel // a name a client made up: not a label value
	}
	reqs := t.set(setKey{kind: 'r', op: r.Op, route: route, consumer: r.Consumer, status: r.Status, cache: r.Cache})
	t.requests.Add(ctx, 1, reqs.add...)
	if r.Refusal != "" {
		return
	}
	t.duration.Record(ctx, r.Duration.Seconds(), t.set(setKey{kind: 'o', op: r.Op, route: route}).record...)
	if r.PromptTokens > 0 {
		t.tokens.Record(ctx, r.PromptTokens, t.set(setKey{kind: 'o', op: r.Op, route: route, tokenType: "input"}).record...)
	}
	if r.CompletionTokens > 0 {
		t.tokens.Record(ctx, r.CompletionTokens, t.set(setKey{kind: 'o', op: r.Op, route: route, tokenType: "output"}).record...)
	}
}

// Shutdown flushes what is pending (within ctx) and stops the exporters.
func (t *OTLP) Shutdown(ctx context.Context) error {
	return errors.Join(t.tp.Shutdown(ctx), t.mp.Shutdown(ctx))
}

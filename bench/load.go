package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// defaultRequestTimeout bounds one request of a load run when the caller sets
// no timeout of its own.
const defaultRequestTimeout = 10 * time.Second

// Request is the one HTTP request a load run sends over and over.
type Request struct {
	// Method is the HTTP method. Default POST.
	Method string
	// URL is the absolute URL of the request.
	URL string
	// Header is sent with every request. It is only read.
	Header http.Header
	// Body is sent with every request. It is only read.
	Body []byte
	// NextBody, if set, is called for the body of each request instead of
	// using Body (unique prompts); it must be safe for concurrent use.
	NextBody func() []byte
	// Timeout bounds each request, measured from its actual send time; a
	// request that runs out of time counts as an error. Default 10s.
	Timeout time.Duration
}

// NewLoadClient returns an HTTP client for load generation: keep-alive pools
// large enough for conns concurrent connections per host, no transparent
// compression (the bytes on the wire are the bytes measured), no proxy.
func NewLoadClient(conns int) *http.Client {
	conns = max(conns, 1)
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         d.DialContext,
			MaxIdleConns:        0, // no global cap; the per-host cap applies
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// outcome is what one request of a load run left behind.
type outcome struct {
	latency time.Duration // from the scheduled (open loop) or actual (closed loop) send time to the last body byte
	lag     time.Duration // open loop: how late the request left compared with its schedule
	status  int           // HTTP status; 0 when no answer arrived
	err     string        // why it failed, empty on success
}

// do sends req once and reads the whole answer. latency is measured from from.
func (req *Request) do(ctx context.Context, c *http.Client, from time.Time) outcome {
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = defaultRequestTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	method := req.Method
	if method == "" {
		method = http.MethodPost
	}
	body := req.Body
	if req.NextBody != nil {
		body = req.NextBody()
	}
	hr, err := http.NewRequestWithContext(ctx, method, req.URL, bytes.NewReader(body))
	if err != nil {
		return outcome{err: err.Error()}
	}
	for k, vs := range req.Header {
		hr.Header[k] = vs
	}
	resp, err := c.Do(hr)
	if err != nil {
		return outcome{latency: time.Since(from), err: err.Error()}
	}
	var snippet []byte
	if resp.StatusCode != http.StatusOK {
		snippet, _ = io.ReadAll(io.LimitReader(resp.Body, 200))
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	o := outcome{latency: time.Since(from), status: resp.StatusCode}
	switch {
	case err != nil:
		o.err = fmt.Sprintf("reading body: %v", err)
	case resp.StatusCode != http.StatusOK:
		o.err = fmt.Sprintf("status %d: %s", resp.StatusCode, bytes.TrimSpace(snippet))
	}
	return o
}

// LatencyResult is the outcome of one open-loop run.
type LatencyResult struct {
	// Rate is the scheduled request rate, requests per second.
	Rate float64
	// Sent is the number of requests launched.
	Sent int
	// OK is the number answered 200 with a complete body.
	OK int
	// Errors is Sent-OK: answers other than 200, transport errors, timeouts.
	Errors int
	// FirstError describes one failed request, empty when none failed.
	FirstError string
	// Latency summarises the latencies of the OK requests, each measured from
	// its scheduled send time.
	Latency Percentiles
	// LagP99 and LagMax say how late requests left compared with their
	// schedule: the generator's own health. Latencies include this lag.
	LagP99, LagMax time.Duration
	// Elapsed is the wall time from the first scheduled send to the last answer.
	Elapsed time.Duration

	latencies, lags []time.Duration // sorted: what Latency and LagP99 summarise, for mergeLatency
}

// OpenLoop sends req at a fixed rate (requests per second) for d, launching
// each request at its scheduled time whether or not earlier ones have been
// answered, and waits for every launched request to finish. Each latency is
// measured from the request's scheduled send time, so time a request spent
// waiting for the generator counts against the target (no coordinated
// omission). When the generator falls behind, due requests are launched at
// once in a burst rather than skipped.
//
// It returns early with ctx's error when ctx is cancelled; requests in flight
// are abandoned through the same context.
func OpenLoop(ctx context.Context, c *http.Client, req *Request, rate float64, d time.Duration) (*LatencyResult, error) {
	if rate <= 0 || math.IsInf(rate, 0) || math.IsNaN(rate) {
		return nil, fmt.Errorf("open loop: rate %v is not a positive number", rate)
	}
	if d <= 0 {
		return nil, fmt.Errorf("open loop: duration %v is not positive", d)
	}
	n := int(rate * d.Seconds())
	if n < 1 {
		return nil, fmt.Errorf("open loop: %v at %v/s schedules no request", d, rate)
	}
	interval := float64(time.Second) / rate
	outs := make([]outcome, n)

	var wg sync.WaitGroup
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	start := time.Now()
	sent := 0
schedule:
	for i := range n {
		at := start.Add(time.Duration(float64(i) * interval))
		if wait := time.Until(at); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				break schedule
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			break schedule
		}
		sent++
		wg.Go(func() {
			lag := time.Since(at)
			o := req.do(ctx, c, at)
			o.lag = lag
			outs[i] = o
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open loop: %w", err)
	}

	res := &LatencyResult{Rate: rate, Sent: sent, Elapsed: elapsed}
	lat := make([]time.Duration, 0, sent)
	lags := make([]time.Duration, 0, sent)
	for _, o := range outs[:sent] {
		lags = append(lags, o.lag)
		if o.err != "" {
			if res.FirstError == "" {
				res.FirstError = o.err
			}
			continue
		}
		lat = append(lat, o.latency)
	}
	res.OK = len(lat)
	res.Errors = sent - res.OK
	res.summarize(lat, lags)
	return res, nil
}

// summarize sets r's percentiles from the latencies of its OK requests and
// the lags of all it sent, and keeps both, sorted, for mergeLatency.
func (r *LatencyResult) summarize(lat, lags []time.Duration) {
	r.Latency = Summarize(lat) // sorts lat
	slices.Sort(lags)
	r.latencies, r.lags = lat, lags
	r.LagP99 = Percentile(lags, 99)
	r.LagMax = 0
	if len(lags) > 0 {
		r.LagMax = lags[len(lags)-1]
	}
}

// mergeLatency is one LatencyResult of the open-loop runs parts, all at
// the same rate, as if their requests had been one run: counts and
// elapsed times add up, percentiles are over every request of every part.
func mergeLatency(parts []*LatencyResult) *LatencyResult {
	if len(parts) == 1 {
		return parts[0]
	}
	m := &LatencyResult{}
	var lat, lags []time.Duration
	for _, p := range parts {
		m.Rate = p.Rate
		m.Sent += p.Sent
		m.OK += p.OK
		m.Errors += p.Errors
		m.Elapsed += p.Elapsed
		if m.FirstError == "" {
			m.FirstError = p.FirstError
		}
		lat = append(lat, p.latencies...)
		lags = append(lags, p.lags...)
	}
	m.summarize(lat, lags)
	return m
}

// ThroughputResult is the outcome of one closed-loop run.
type ThroughputResult struct {
	// Workers is the number of concurrent closed-loop workers.
	Workers int
	// OK is the number of requests answered 200 with a complete body.
	OK int
	// Errors counts the other requests.
	Errors int
	// FirstError describes one failed request, empty when none failed.
	FirstError string
	// Elapsed is the wall time from start until the last worker finished.
	Elapsed time.Duration
	// RPS is OK / Elapsed in requests per second.
	RPS float64
}

// ClosedLoop runs workers concurrent workers, each sending req and, once it
// is answered, the next one, until d has passed; requests still in flight at
// that moment are completed and counted. The result's RPS is the target's
// throughput at that concurrency.
func ClosedLoop(ctx context.Context, c *http.Client, req *Request, workers int, d time.Duration) (*ThroughputResult, error) {
	if workers < 1 {
		return nil, fmt.Errorf("closed loop: %d workers", workers)
	}
	if d <= 0 {
		return nil, fmt.Errorf("closed loop: duration %v is not positive", d)
	}
	var (
		ok, failed atomic.Int64
		firstErr   atomic.Pointer[string]
		wg         sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for range workers {
		wg.Go(func() {
			var nOK, nErr int64
			for ctx.Err() == nil && time.Now().Before(deadline) {
				o := req.do(ctx, c, time.Now())
				if o.err != "" {
					nErr++
					firstErr.CompareAndSwap(nil, &o.err)
					continue
				}
				nOK++
			}
			ok.Add(nOK)
			failed.Add(nErr)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("closed loop: %w", err)
	}
	res := &ThroughputResult{
		Workers: workers,
		OK:      int(ok.Load()),
		Errors:  int(failed.Load()),
		Elapsed: elapsed,
		RPS:     float64(ok.Load()) / elapsed.Seconds(),
	}
	if p := firstErr.Load(); p != nil {
		res.FirstError = *p
	}
	return res, nil
}

// mergeThroughput is one ThroughputResult of the closed-loop runs parts, as
// if they had been one run as long as all of them: requests and elapsed
// times add up, and RPS is their quotient.
func mergeThroughput(parts []*ThroughputResult) *ThroughputResult {
	if len(parts) == 1 {
		return parts[0]
	}
	m := &ThroughputResult{}
	for _, p := range parts {
		m.Workers = p.Workers
		m.OK += p.OK
		m.Errors += p.Errors
		m.Elapsed += p.Elapsed
		if m.FirstError == "" {
			m.FirstError = p.FirstError
		}
	}
	if m.Elapsed > 0 {
		m.RPS = float64(m.OK) / m.Elapsed.Seconds()
	}
	return m
}

// Percentiles summarises a set of latencies.
type Percentiles struct {
	// Count is the number of samples.
	Count int
	// P50, P90, P99 and Max are nearest-rank percentiles; all zero when Count is 0.
	P50, P90, P99, Max time.Duration
}

// Summarize returns the percentiles of samples. It sorts samples in place.
func Summarize(samples []time.Duration) Percentiles {
	slices.Sort(samples)
	p := Percentiles{
		Count: len(samples),
		P50:   Percentile(samples, 50),
		P90:   Percentile(samples, 90),
		P99:   Percentile(samples, 99),
	}
	if len(samples) > 0 {
		p.Max = samples[len(samples)-1]
	}
	return p
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, which must be sorted ascending: the smallest sample that is at
// least as large as p percent of the samples. It returns 0 for no samples,
// and the minimum for p <= 0.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Median returns the median of xs (the mean of the two middle values for an
// even count), or 0 for none. xs is not modified.
func Median[T ~int64 | ~float64](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// histogram is one Prometheus histogram series read from /metrics:
// cumulative counts by upper bound, in increasing order.
type histogram struct {
	le     []float64
	counts []float64
}

// scrapeHistograms reads the histogram series of GET url whose name and
// labels start with one of prefixes (e.g. `llmgate_request_duration_seconds{op="chat"`),
// keyed by that prefix.
func scrapeHistograms(ctx context.Context, c *http.Client, url string, prefixes ...string) (map[string]histogram, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading %s: status %d %v", url, resp.StatusCode, err)
	}
	return parseHistograms(string(b), prefixes...), nil
}

// parseHistograms picks the _bucket lines of the series named by prefixes
// (the metric name followed by its first labels, without _bucket) out of
// Prometheus text.
func parseHistograms(text string, prefixes ...string) map[string]histogram {
	out := map[string]histogram{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, p := range prefixes {
			name, labels, ok := strings.Cut(p, "{")
			if !ok || !strings.HasPrefix(line, name+"_bucket{"+labels) {
				continue
			}
			i := strings.Index(line, `le="`)
			j := strings.LastIndexByte(line, ' ')
			if i < 0 || j < i {
				continue
			}
			leText := line[i+4:]
			leText = leText[:strings.IndexByte(leText, '"')]
			le, err1 := strconv.ParseFloat(leText, 64)
			if leText == "+Inf" {
				le, err1 = math.Inf(1), nil
			}
			n, err2 := strconv.ParseFloat(line[j+1:], 64)
			if err1 != nil || err2 != nil {
				continue
			}
			h := out[p]
			h.le = append(h.le, le)
			h.counts = append(h.counts, n)
			out[p] = h
		}
	}
	for p, h := range out {
		idx := make([]int, len(h.le))
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int {
			switch {
			case h.le[a] < h.le[b]:
				return -1
			case h.le[a] > h.le[b]:
				return 1
			}
			return 0
		})
		var s histogram
		for _, i := range idx {
			s.le, s.counts = append(s.le, h.le[i]), append(s.counts, h.counts[i])
		}
		out[p] = s
	}
	return out
}

// minus is h's counts less those of before (the same buckets): what was
// observed between two scrapes.
func (h histogram) minus(before histogram) histogram {
	out := histogram{le: h.le, counts: slices.Clone(h.counts)}
	if len(before.counts) == len(h.counts) {
		for i := range out.counts {
			out.counts[i] -= before.counts[i]
		}
	}
	return out
}

// count is the number of observations.
func (h histogram) count() float64 {
	if len(h.counts) == 0 {
		return 0
	}
	return h.counts[len(h.counts)-1]
}

// upperBound is the upper bound of the bucket holding quantile q: at least
// a share q of the observations were at most that (+Inf when beyond the
// last finite bucket, NaN without observations).
func (h histogram) upperBound(q float64) float64 {
	n := h.count()
	if n == 0 {
		return math.NaN()
	}
	for i, c := range h.counts {
		if c >= q*n {
			return h.le[i]
		}
	}
	return math.Inf(1)
}

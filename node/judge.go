package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/llmgate/llmgate/index"
	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/verify"
)

// RouteJudge asks one of the gateway's chat routes whether one cached answer
// serves two requests (SPEC §6): one chat request with both texts verbatim,
// answered with one word; the first word decides. Like the route embedder,
// its calls are the gateway's: not charged to a consumer, metered by the
// verifier's own budget.
type RouteJudge struct {
	g     *Gateway
	Route string
}

// Judge implements verify.Judge.
func (r *RouteJudge) Judge(ctx context.Context, query, candidate string) (same bool, tokens int64, err error) {
	ctx, span := r.g.startSpan(ctx, "cache.judge", trace.SpanKindInternal, attribute.String("llmgate.judge.route", r.Route))
	if span != nil {
		defer func() {
			failed := ""
			if err != nil {
				failed = err.Error()
			}
			endSpan(span, failed, attribute.Bool("llmgate.judge.same", same), attribute.Int64("llmgate.judge.tokens", tokens))
		}()
	}
	rt, ok := r.g.routes[r.Route]
	if !ok {
		return false, 0, fmt.Errorf("judge route %q does not exist", r.Route)
	}
	body, err := json.Marshal(map[string]any{
		"model": r.Route,
		"messages": []map[string]string{
			{"role": "system", "content": verify.JudgeSystem},
			{"role": "user", "content": verify.JudgeUser(query, candidate)},
		},
		"max_tokens":  2,
		"temperature": 0,
	})
	if err != nil {
		return false, 0, fmt.Errorf("encoding judge request: %w", err)
	}
	call := &Call{Op: openai.OpChat, Route: r.Route, Model: r.Route, Body: body, Header: http.Header{}}
	chat, perr := openai.ParseChat(body)
	if perr != nil {
		return false, 0, fmt.Errorf("encoding judge request: %s", perr.Message)
	}
	call.Chat = chat
	x := &exchange{call: call}
	var sink discardWriter
	out := r.g.forward(ctx, &sink, call, rt, x)
	if x.reply == nil || x.reply.status != http.StatusOK {
		return false, 0, fmt.Errorf("judge route %s: status %d", r.Route, out.Status)
	}
	var c struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage struct {
			TotalTokens int64 `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(x.reply.body, &c); err != nil || len(c.Choices) == 0 {
		return false, c.Usage.TotalTokens, fmt.Errorf("judge route %s: unreadable answer", r.Route)
	}
	return verify.Yes(c.Choices[0].Message.Content), c.Usage.TotalTokens, nil
}

// verdictSpace is where verdicts live in the cache: an internal Space
// (index.Space.Internal; config refuses route names beginning with "·"), so
// the cache's persistence, replication and catch-up carry them to every node
// while stats entries, listings, a purge of everything and max_entries
// eviction leave them alone: only DELETE /admin/cache?route=·verify (or
// partition=·verify) resets the learned thresholds.
var verdictSpace = index.Space{Partition: "·verify", Route: "·verify"}

// verdictTTL is how long a verdict counts.
const verdictTTL = 30 * 24 * time.Hour

// verdictStore keeps verdicts as cache entries of verdictSpace.
type verdictStore struct {
	c   VerdictCache
	now func() time.Time
}

// VerdictCache is what the verdict store needs of the cache.
type VerdictCache interface {
	Store(ctx context.Context, e *index.Entry) error
	List(ctx context.Context, partition, route string, limit int, cursor string) ([]*index.Entry, string, error)
}

type wireVerdict struct {
	Key      string  `json:"key"`
	Route    string  `json:"route"`
	Distance float32 `json:"distance"`
	Same     bool    `json:"same"`
	Audit    bool    `json:"audit,omitempty"`
	Soft     bool    `json:"soft,omitempty"`
	At       int64   `json:"at"`
}

func (s verdictStore) Save(ctx context.Context, v verify.Verdict) error {
	b, err := json.Marshal(wireVerdict{v.Key, v.Route, v.Distance, v.Same, v.Audit, v.Soft, v.At.UnixNano()})
	if err != nil {
		return err
	}
	return s.c.Store(ctx, &index.Entry{Space: verdictSpace, Prompt: string(b), Response: []byte("{}"), ExpiresAt: s.now().Add(verdictTTL)})
}

func (s verdictStore) Load(ctx context.Context) ([]verify.Verdict, error) {
	var out []verify.Verdict
	cursor := ""
	for {
		page, next, err := s.c.List(ctx, verdictSpace.Partition, verdictSpace.Route, 1000, cursor)
		if err != nil {
			return nil, err
		}
		for _, e := range page {
			var w wireVerdict
			if json.Unmarshal([]byte(e.Prompt), &w) != nil {
				continue
			}
			out = append(out, verify.Verdict{Key: w.Key, Route: w.Route, Distance: w.Distance, Same: w.Same, Audit: w.Audit, Soft: w.Soft, At: time.Unix(0, w.At)})
		}
		if next == "" {
			return out, nil
		}
		cursor = next
	}
}

// VerifyStats is the verifier's state for the admin API; ok is false when
// verification is off.
func (g *Gateway) VerifyStats(ctx context.Context) (verify.Stats, bool) {
	if g.verifier == nil {
		return verify.Stats{}, false
	}
	return g.verifier.Stats(ctx), true
}

// verifyCollector exports the verifier's state on each scrape.
type verifyCollector struct {
	v                          *verify.Verifier
	precision, audited, judged *prometheus.Desc
	tokens                     *prometheus.Desc
}

func newVerifyCollector(v *verify.Verifier) *verifyCollector {
	return &verifyCollector{
		v: v,
		precision: prometheus.NewDesc("llmgate_cache_verify_precision",
			"Online precision estimate of semantic hits served without a judge: audited hits the judge confirmed / audited, all nodes.", []string{"route"}, nil),
		audited: prometheus.NewDesc("llmgate_cache_verify_audited",
			"Semantic hits audited by the judge, all nodes.", []string{"route"}, nil),
		judged: prometheus.NewDesc("llmgate_cache_judge_calls_total",
			"Judge calls of this node by result: confirmed, refused, failed; over_budget counts candidates not judged.", []string{"result"}, nil),
		tokens: prometheus.NewDesc("llmgate_cache_judge_tokens_total", "Tokens the judge spent on this node.", nil, nil),
	}
}

func (c *verifyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.precision
	ch <- c.audited
	ch <- c.judged
	ch <- c.tokens
}

func (c *verifyCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st := c.v.Stats(ctx)
	for route, r := range st.Routes {
		ch <- prometheus.MustNewConstMetric(c.precision, prometheus.GaugeValue, r.Precision, route)
		ch <- prometheus.MustNewConstMetric(c.audited, prometheus.GaugeValue, float64(r.Audited), route)
	}
	for result, n := range map[string]int64{"confirmed": st.Confirmed, "refused": st.Refused, "failed": st.Failed, "over_budget": st.OverBudget} {
		ch <- prometheus.MustNewConstMetric(c.judged, prometheus.CounterValue, float64(n), result)
	}
	ch <- prometheus.MustNewConstMetric(c.tokens, prometheus.CounterValue, float64(st.Tokens))
}

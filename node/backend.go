package node

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/openai"
)

// backend is one model endpoint and its health.
type backend struct {
	name       string
	kind       string
	base       string // URL without trailing slash
	apiKey     string
	apiVersion string
	api        string // azure: deployments or v1
	weight     int
	breaker    *breaker
	capacity   *capacity
	// tokens supplies a Microsoft Entra ID token in place of apiKey
	// (auth: entra); nil = the key.
	tokens TokenSource
	// spanName is the name of an attempt's span, "upstream {name}", built once.
	spanName string
}

// TokenSource supplies the bearer token of a backend that authenticates
// with Microsoft Entra ID (*identity.EntraToken). Token may block until a
// token is fetched, at most until ctx ends; its error names the backend and
// holds no secret.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

func newBackend(b config.Backend, up config.Upstream) *backend {
	return &backend{
		name:       b.Name,
		spanName:   "upstream " + b.Name,
		kind:       b.Kind,
		base:       strings.TrimRight(b.URL, "/"),
		apiKey:     b.APIKey,
		apiVersion: b.APIVersion,
		api:        b.API,
		weight:     max(b.Weight, 1),
		breaker:    newBreaker(up.BreakerFailures, up.BreakerCooldown),
		capacity:   newCapacity(b.TPM),
	}
}

// carryOver takes the health of the backend of the same name, kind and URL
// among prev (the gateway replaced by a reload): its breaker, unless the
// breaker settings changed, and its observed capacity, unless its tpm did.
func (b *backend) carryOver(prev []*backend, up, prevUp config.Upstream) {
	for _, p := range prev {
		if p.name != b.name || p.kind != b.kind || p.base != b.base {
			continue
		}
		if up.BreakerFailures == prevUp.BreakerFailures && up.BreakerCooldown == prevUp.BreakerCooldown {
			b.breaker = p.breaker
		}
		if p.capacity.tpm == b.capacity.tpm {
			b.capacity = p.capacity
		}
		return
	}
}

// newRequest builds the upstream request for call. The body reader is fresh
// each time, so a retry on another backend resends the same bytes.
func (b *backend) newRequest(ctx context.Context, call *Call, defaultAPIVersion string) (*http.Request, error) {
	body := call.Body
	target, modelInBody, v := b.endpoint(call.Op, call.Route, "", call.APIVersion, defaultAPIVersion)
	if modelInBody && call.Model != call.Route {
		body = withModel(body, call.Route)
	}
	// Azure takes stream_options from api-version 2024-09-01(-preview) on
	// (dates compare as strings); its v1 API and OpenAI always do.
	usageOK := v == "" || v >= "2024-09-01"
	body = wireOf(call).upstreamBody(call, body, usageOK)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building request to backend %s: %w", b.name, err)
	}
	req.ContentLength = int64(len(body))
	// One slice for the values (the names are canonical already): what
	// Header.Set would store, without a slice per header.
	accept := "application/json"
	if call.Stream {
		accept = "text/event-stream"
	}
	vs := []string{"application/json", accept, "llmgate", call.RequestID, call.RequestID}
	h := req.Header
	h["Content-Type"], h["Accept"], h["User-Agent"] = vs[0:1:1], vs[1:2:2], vs[2:3:3]
	if call.RequestID != "" {
		h[headerMSRequestIDKey], h[headerRequestIDKey] = vs[3:4:4], vs[4:5:5]
	}
	if err := b.authorize(ctx, h); err != nil {
		return nil, err
	}
	return req, nil
}

// authorize sets the backend's own credential on an upstream request: a
// Microsoft Entra ID token (auth: entra) or its key.
func (b *backend) authorize(ctx context.Context, h http.Header) error {
	if b.tokens != nil {
		tok, err := b.tokens.Token(ctx)
		if err != nil {
			return err
		}
		h.Set("Authorization", "Bearer "+tok)
	} else if b.apiKey != "" {
		if b.kind == config.KindAzure {
			h.Set("api-key", b.apiKey)
		} else {
			h.Set("Authorization", "Bearer "+b.apiKey)
		}
	}
	return nil
}

// responsesAPIVersion is the api-version of Azure's /openai/responses when
// neither the backend nor the client names one: the Responses API is not
// in the GA version the other routes default to.
const responsesAPIVersion = "2025-04-01-preview"

// endpoint is the URL of op (with suffix, e.g. "/{id}/cancel", for the
// Responses API's follow-ups) on b, whether the body names the model, and
// the api-version sent ("" for none). An azure backend with api: v1 and an
// openai backend take the OpenAI routes (model in the body); an azure
// backend with api: deployments takes the deployment in the path, except
// for the Responses API, which Azure serves at /openai/responses.
func (b *backend) endpoint(op openai.Operation, route, suffix, clientVersion, defaultVersion string) (target string, modelInBody bool, version string) {
	switch {
	case b.kind == config.KindAzure && b.api == config.APIV1:
		return b.base + "/openai/v1/" + op.Path() + suffix, true, ""
	case b.kind == config.KindAzure:
		version = cmp.Or(b.apiVersion, clientVersion)
		if op == openai.OpResponses {
			version = cmp.Or(version, responsesAPIVersion)
			return b.base + "/openai/responses" + suffix + "?api-version=" + url.QueryEscape(version), true, version
		}
		version = cmp.Or(version, defaultVersion)
		return b.base + "/openai/deployments/" + url.PathEscape(route) + "/" + op.Path() + suffix + "?api-version=" + url.QueryEscape(version), false, version
	}
	return b.base + "/" + op.Path() + suffix, true, ""
}

// withModel returns body with its top-level "model" set to model. OpenAI-style
// backends route on it; Azure-style clients leave it out.
func withModel(body []byte, model string) []byte {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return body
	}
	m, _ := json.Marshal(model)
	if _, had := obj["model"]; !had {
		// Insert in front, leaving the client's bytes after it untouched.
		i := bytes.IndexByte(body, '{')
		out := make([]byte, 0, len(body)+len(m)+10)
		out = append(out, body[:i+1]...)
		out = append(out, `"model":`...)
		out = append(out, m...)
		if len(obj) > 0 {
			out = append(out, ',')
		}
		return append(out, body[i+1:]...)
	}
	obj["model"] = m
	out, err := json.Marshal(obj)
	if err != nil {
		return body
	}
	return out
}

// retryAfter reads a backend's retry hint: retry-after-ms (Azure), then
// Retry-After in seconds or as an HTTP date. It never exceeds limit
// (upstream.max_retry_after): a backend must not close itself off for years.
func retryAfter(h http.Header, now time.Time, limit time.Duration) time.Duration {
	clamp := func(d float64) time.Duration {
		if d >= float64(limit) {
			return limit
		}
		return time.Duration(d)
	}
	if v := h.Get("retry-after-ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return clamp(ms * float64(time.Millisecond))
		}
	}
	if v := h.Get("Retry-After"); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
			return clamp(s * float64(time.Second))
		}
		if t, err := http.ParseTime(v); err == nil && t.After(now) {
			return min(t.Sub(now), limit)
		}
	}
	return 0
}

// group is one priority group of a route: backends that share its traffic.
type group struct {
	// ring lists each backend weight times, interleaved, so a rotating start
	// index spreads requests in proportion to the weights.
	ring []*backend
	size int // distinct backends
	next atomic.Uint64
}

func newGroup(members []*backend) *group {
	g := &group{size: len(members)}
	left := make([]int, len(members))
	total := 0
	for i, b := range members {
		left[i] = b.weight
		total += b.weight
	}
	for len(g.ring) < total {
		for i, b := range members {
			if left[i] > 0 {
				g.ring = append(g.ring, b)
				left[i]--
			}
		}
	}
	return g
}

// order returns the group's distinct backends in the order this request tries them.
func (g *group) order(buf []*backend) []*backend {
	if g.size == 1 {
		return append(buf, g.ring[0])
	}
	start := int(g.next.Add(1) % uint64(len(g.ring)))
	for i := 0; i < len(g.ring) && len(buf) < g.size; i++ {
		b := g.ring[(start+i)%len(g.ring)]
		seen := false
		for _, o := range buf {
			if o == b {
				seen = true
				break
			}
		}
		if !seen {
			buf = append(buf, b)
		}
	}
	return buf
}

// route is what consumers call: a name and its ordered priority groups.
type route struct {
	name   string
	groups []*group
	// metered is set when a backend of the route has a configured tpm: its
	// capacity steering needs each request's token estimate.
	metered bool
	// steers is set when the route is metered or one of its groups has
	// several backends: choosing among them by the backends' rate-limit
	// headers (see deferFull) also needs the estimate.
	steers bool
	// price turns its tokens into the cost charged to money budgets.
	price config.Price
}

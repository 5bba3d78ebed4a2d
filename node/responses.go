package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/llmgate/llmgate/affinity"
	"github.com/llmgate/llmgate/internal/openai"
)

// Owners remembers which consumer created each Responses API response and
// which backend holds it, cluster-wide: implemented by *affinity.Store.
type Owners interface {
	Remember(ctx context.Context, id string, o affinity.Owner) error
	Lookup(ctx context.Context, id string) (affinity.Owner, bool)
	Forget(ctx context.Context, id string) error
}

// ownersTimeout bounds a call to the owners' store: a store that cannot
// answer in this time costs a follow-up its affinity, never a create.
const ownersTimeout = time.Second

// responseNotFound is the 404 for an id that is unknown or another
// consumer's: the two must read alike.
func responseNotFound(id, param string) *openai.Error {
	return &openai.Error{Status: http.StatusNotFound, Type: "invalid_request_error", Code: openai.CodeNotFound, Param: param,
		Message: fmt.Sprintf("Response with id '%s' not found.", id)}
}

// holder returns the backend holding response id, if it belongs to c.
func (g *Gateway) holder(ctx context.Context, c *Consumer, id, param string) (*backend, *openai.Error) {
	lctx, cancel := context.WithTimeout(ctx, ownersTimeout)
	o, ok := g.owners.Lookup(lctx, id)
	cancel()
	if !ok || c == nil || o.Consumer != c.Name {
		return nil, responseNotFound(id, param)
	}
	for _, b := range g.backs {
		if b.name == o.Backend {
			return b, nil
		}
	}
	e := openai.Unavailable(fmt.Sprintf("Response '%s' is held by backend '%s', which this gateway no longer has.", id, o.Backend))
	e.Header = http.Header{"Retry-After": {"1"}}
	return nil, e
}

// remember records that the answer x created belongs to the caller and to
// backend b. A failing store is logged: the client has its answer.
func (g *Gateway) remember(ctx context.Context, x *exchange, backendName string) {
	id := wireOf(x.call).created(x)
	if id == "" || backendName == "" || x.call.Consumer == nil {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ownersTimeout)
	defer cancel()
	if err := g.owners.Remember(rctx, id, affinity.Owner{Consumer: x.call.Consumer.Name, Backend: backendName}); err != nil {
		g.log.Warn("remembering a response's owner failed; follow-ups on it will be refused", "response_id", id, "request_id", x.call.RequestID, "err", err)
	}
}

// FollowUp is a call on a stored response: GET /responses/{id}, DELETE, POST
// …/cancel, GET …/input_items.
type FollowUp struct {
	Method string
	ID     string
	// Sub is "", "cancel" or "input_items".
	Sub      string
	Query    url.Values // the client's query, passed on (limit, order, after, include, stream)
	Consumer *Consumer
	// APIVersion is the client's Azure api-version, if it sent one.
	APIVersion string
	RequestID  string
	Header     http.Header
}

// ServeFollowUp sends f to the backend holding the response, if it belongs
// to the caller (404 otherwise, as if it did not exist), and relays the
// answer. It charges nothing: these calls generate no tokens.
func (g *Gateway) ServeFollowUp(ctx context.Context, w http.ResponseWriter, f *FollowUp) Outcome {
	h := w.Header()
	h.Set(HeaderCache, cacheBypass)
	g.LimitHeaders(ctx, h, f.Consumer, f.Header, "")
	b, e := g.holder(ctx, f.Consumer, f.ID, "response_id")
	if e != nil {
		e.Write(w)
		return Outcome{Status: e.Status, Refusal: e.Code, Cache: cacheBypass}
	}
	ctx, cancel := context.WithTimeout(ctx, g.up.Timeout)
	defer cancel()
	suffix := "/" + url.PathEscape(f.ID)
	if f.Sub != "" {
		suffix += "/" + f.Sub
	}
	target, _, _ := b.endpoint(openai.OpResponses, "", suffix, f.APIVersion, g.up.APIVersion)
	q := url.Values{}
	for k, vs := range f.Query {
		if k != "api-version" {
			q[k] = vs
		}
	}
	if enc := q.Encode(); enc != "" {
		if strings.Contains(target, "?") {
			target += "&" + enc
		} else {
			target += "?" + enc
		}
	}
	var body io.Reader
	if f.Method == http.MethodPost {
		body = bytes.NewReader([]byte("{}"))
	}
	req, err := http.NewRequestWithContext(ctx, f.Method, target, body)
	if err != nil {
		e := openai.Unavailable("Building the request to backend " + b.name + " failed.")
		e.Write(w)
		return Outcome{Status: e.Status}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "llmgate")
	if f.RequestID != "" {
		req.Header.Set("x-ms-client-request-id", f.RequestID)
		req.Header.Set("x-request-id", f.RequestID)
	}
	if err := b.authorize(ctx, req.Header); err != nil {
		g.log.Warn("response follow-up: no credential for the backend", "backend", b.name, "request_id", f.RequestID, "err", err)
		e := openai.Unavailable(fmt.Sprintf("Backend '%s', which holds response '%s', could not be authenticated to.", b.name, f.ID))
		e.Header = http.Header{"Retry-After": {"1"}}
		e.Write(w)
		return Outcome{Status: e.Status, Backend: b.name, Cache: cacheBypass}
	}
	start := g.now()
	resp, err := g.client.Do(req)
	if err != nil {
		g.log.Warn("response follow-up failed", "backend", b.name, "response_id", f.ID, "request_id", f.RequestID, "err", err)
		e := openai.Unavailable(fmt.Sprintf("Backend '%s', which holds response '%s', did not answer (%s).", b.name, f.ID, describe(err)))
		e.Header = http.Header{"Retry-After": {"1"}}
		e.Write(w)
		return Outcome{Status: e.Status, Backend: b.name, Upstream: g.now().Sub(start), Cache: cacheBypass}
	}
	defer resp.Body.Close()
	copyHeaders(h, resp.Header)
	h.Set(HeaderBackend, b.name)
	out := Outcome{Status: resp.StatusCode, Backend: b.name, Attempts: 1, Cache: cacheBypass}
	if isEventStream(resp.Header) {
		// GET …?stream=true on a background response: relayed as it comes.
		h.Del("Content-Length")
		w.WriteHeader(resp.StatusCode)
		rc := http.NewResponseController(w)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					break
				}
				_ = rc.Flush()
			}
			if err != nil {
				break
			}
		}
		out.Upstream = g.now().Sub(start)
		return out
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	out.Upstream = g.now().Sub(start)
	if err != nil {
		e := openai.Unavailable(fmt.Sprintf("Backend '%s' broke off its answer (%s).", b.name, describe(err)))
		e.Header = http.Header{"Retry-After": {"1"}}
		e.Write(w)
		out.Status = e.Status
		return out
	}
	if f.Method == http.MethodDelete && resp.StatusCode == http.StatusOK {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ownersTimeout)
		if err := g.owners.Forget(fctx, f.ID); err != nil {
			g.log.Warn("forgetting a deleted response failed", "response_id", f.ID, "err", err)
		}
		cancel()
	}
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(data)
	return out
}

package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
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

// holder returns the backend holding response id, if it belongs to c, and
// the id the backend knows it by: id itself, or for the replay of a cached
// answer the response it repeats.
func (g *Gateway) holder(ctx context.Context, c *Consumer, id, param string) (*backend, string, *openai.Error) {
	lctx, cancel := context.WithTimeout(ctx, ownersTimeout)
	o, ok := g.owners.Lookup(lctx, id)
	cancel()
	if !ok || c == nil || o.Consumer != c.Name || o.Backend == "" {
		// (A replay whose original no node knows has nothing behind it.)
		return nil, "", responseNotFound(id, param)
	}
	held := id
	if o.Origin != "" {
		held = o.Origin
	}
	for _, b := range g.backs {
		if b.name == o.Backend {
			return b, held, nil
		}
	}
	e := openai.Unavailable(fmt.Sprintf("Response '%s' is held by backend '%s', which this gateway no longer has.", id, o.Backend))
	e.Header = http.Header{"Retry-After": {"1"}}
	return nil, "", e
}

// reissue gives the replay of a cached Responses answer an id of its own,
// owned by the caller: replays to several consumers (or twice to one) are
// distinct responses, each with its own follow-ups. The id stands for the
// stored answer's original, which the backend holds: GET, input_items,
// cancel and previous_response_id on it reach the original (answers shown
// under the replay's id); DELETE forgets the replay only. Without an owner
// record the replay still gets its id, followed up as unknown (404).
func (g *Gateway) reissue(ctx context.Context, call *Call, stored []byte) (body []byte, id string) {
	origin := storedID(stored)
	if !strings.HasPrefix(origin, "resp_") || call.Consumer == nil {
		return stored, origin
	}
	id = newResponseID(time.Now())
	body = bytes.ReplaceAll(stored, quoted(origin), quoted(id))
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ownersTimeout)
	defer cancel()
	o, _ := g.owners.Lookup(rctx, origin)
	if o.Origin != "" {
		origin = o.Origin
	}
	if err := g.owners.Remember(rctx, id, affinity.Owner{Consumer: call.Consumer.Name, Backend: o.Backend, Origin: origin}); err != nil {
		g.log.Warn("remembering a replayed response's owner failed; follow-ups on it will be refused", "response_id", id, "request_id", call.RequestID, "err", err)
	}
	return body, id
}

// storedID is the id of a stored answer.
func storedID(stored []byte) string {
	var head struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(stored, &head)
	return head.ID
}

// newResponseID makes a response id in the API's form: resp_ and 48 hex
// digits, the first 8 the Unix time and the next 4 the second's fraction
// (in 65,536ths), as OpenAI's ids are. Ids made close in time sort
// together, so their owner records (keyed by id) go into Badger's memtable
// next to the previous ones, in cache: less CPU per record than ids in no
// order (affinity's BenchmarkWriteBatch, ids=timed against ids=random).
func newResponseID(now time.Time) string {
	var b [24]byte
	binary.BigEndian.PutUint32(b[:4], uint32(now.Unix()))
	binary.BigEndian.PutUint16(b[4:6], uint16(uint64(now.Nanosecond())<<16/1e9))
	_, _ = rand.Read(b[6:])
	return "resp_" + hex.EncodeToString(b[:])
}

func quoted(id string) []byte { return []byte(`"` + id + `"`) }

// replayDeleted is the answer to DELETE on a replay's id: the replay is
// forgotten, the original (another response, maybe another consumer's) stays.
func replayDeleted(id string) []byte {
	b, _ := json.Marshal(struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Deleted bool   `json:"deleted"`
	}{id, "response", true})
	return b
}

// remember records that the answer x created belongs to the caller and to
// backend b. A failing store is logged: the client has its answer.
func (g *Gateway) remember(ctx context.Context, x *exchange, backendName string) {
	id := wireOf(x.call).created(x)
	if id == "" || backendName == "" || x.call.Consumer == nil {
		return
	}
	o := affinity.Owner{Consumer: x.call.Consumer.Name, Backend: backendName}
	done, err := false, error(nil)
	if t, ok := g.owners.(ownersTrier); ok {
		done, err = t.TryRemember(id, o) // the common case: no timer
	}
	if !done && err == nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ownersTimeout)
		err = g.owners.Remember(rctx, id, o)
		cancel()
	}
	if err != nil {
		g.log.Warn("remembering a response's owner failed; follow-ups on it will be refused", "response_id", id, "request_id", x.call.RequestID, "err", err)
	}
}

// ownersTrier is an Owners that can remember without waiting
// (affinity.Store.TryRemember).
type ownersTrier interface {
	TryRemember(id string, o affinity.Owner) (bool, error)
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
	b, held, e := g.holder(ctx, f.Consumer, f.ID, "response_id")
	if e != nil {
		e.Write(w)
		return Outcome{Status: e.Status, Refusal: e.Code, Cache: cacheBypass}
	}
	replay := held != f.ID
	if replay && f.Method == http.MethodDelete {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ownersTimeout)
		err := g.owners.Forget(fctx, f.ID)
		cancel()
		if err != nil {
			g.log.Warn("forgetting a deleted replay failed", "response_id", f.ID, "err", err)
			e := openai.Unavailable("Deleting response '" + f.ID + "' failed; try again.")
			e.Header = http.Header{"Retry-After": {"1"}}
			e.Write(w)
			return Outcome{Status: e.Status, Refusal: e.Code, Cache: cacheBypass}
		}
		data := replayDeleted(f.ID)
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data)
		return Outcome{Status: http.StatusOK, Cache: cacheBypass}
	}
	if replay && f.Sub == "input_items" {
		// The original's input is its creator's prompt, which a shared
		// cache's semantic hit does not repeat word for word: shown only
		// to the consumer that created the original.
		lctx, cancel := context.WithTimeout(ctx, ownersTimeout)
		o, ok := g.owners.Lookup(lctx, held)
		cancel()
		if !ok || o.Consumer != f.Consumer.Name {
			e := responseNotFound(f.ID, "response_id")
			e.Message = fmt.Sprintf("Response '%s' is a cached answer's replay; its input items are not available.", f.ID)
			e.Write(w)
			return Outcome{Status: e.Status, Refusal: e.Code, Cache: cacheBypass}
		}
	}
	// A replay's answers show its own id where the backend's show the original's.
	shown := func(b []byte) []byte {
		if !replay {
			return b
		}
		return bytes.ReplaceAll(b, quoted(held), quoted(f.ID))
	}
	ctx, cancel := context.WithTimeout(ctx, g.up.Timeout)
	defer cancel()
	suffix := "/" + url.PathEscape(held)
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
		if replay {
			// Event by event, so that each shows the replay's id.
			er := openai.NewEventReader(resp.Body)
			for {
				ev, err := er.Next()
				if err != nil {
					break
				}
				if _, werr := w.Write(shown(ev.Raw)); werr != nil {
					break
				}
				_ = rc.Flush()
			}
			out.Upstream = g.now().Sub(start)
			return out
		}
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
	data = shown(data)
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(data)
	return out
}

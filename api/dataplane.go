package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/trace"

	"github.com/llmgate/llmgate/identity"
	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/node"
	"github.com/llmgate/llmgate/telemetry"
)

// openAIStyle serves /v1/{op}: the body's "model" names the route.
func (a *API) openAIStyle(op openai.Operation) echo.HandlerFunc {
	return func(c echo.Context) error {
		return a.modelCall(c, op, "")
	}
}

// azureStyle serves /openai/deployments/{deployment}/{op}: the path names the route.
func (a *API) azureStyle(op openai.Operation) echo.HandlerFunc {
	return func(c echo.Context) error {
		return a.modelCall(c, op, c.Param("deployment"))
	}
}

// modelCall is the whole data-plane path of one model request: authenticate,
// read and validate the body, resolve the route, run the node's pipeline.
func (a *API) modelCall(c echo.Context, op openai.Operation, deployment string) error {
	start := a.now()
	req, w := c.Request(), c.Response()
	label := routeLabel{op: op.String(), route: "unknown"}
	w.Header().Set(headerCacheKey, "off") // the node's look-up stage overrides it when it has a cache
	rec := telemetry.Request{Time: start, RequestID: c.Get("request_id").(string), Op: label.op, Cache: "off"}
	ctx := req.Context()
	if a.opts.Tracer != nil {
		var span trace.Span
		ctx, span = a.startTrace(ctx, req.Header, op)
		defer a.endTrace(span, &rec)
	}
	var consumer *node.Consumer
	fail := func(e *openai.Error) error {
		a.gw.LimitHeaders(req.Context(), w.Header(), consumer, req.Header, "")
		e.Write(w)
		total := a.now().Sub(start)
		a.metrics.request(label, e.Status, "", total, 0)
		rec.Status, rec.Refusal, rec.Duration = e.Status, e.Code, total
		a.observe(req, &rec)
		return nil
	}

	consumer, aerr := a.authenticate(req)
	if aerr != nil {
		return fail(aerr)
	}
	rec.Consumer, rec.Credential, rec.User = consumer.Name, credentialLabel(consumer), consumer.User
	if rec.User == "" {
		rec.User = a.gw.User(req.Header)
	}
	if deployment != "" {
		rec.Route = deployment
	}
	if deployment != "" && a.gw.HasRoute(deployment) {
		label.route = deployment
	}
	body, aerr := a.readBody(w, req)
	if aerr != nil {
		return fail(aerr)
	}
	// A prompt that cannot fit the consumer's limit by its length is refused
	// before the body is decoded (see node.Gateway.RefuseByLength).
	if model, e := a.gw.RefuseByLength(ctx, consumer, op, body); e != nil {
		if deployment == "" && a.gw.HasRoute(model) {
			rec.Route, label.route = model, model
		}
		return fail(e)
	}
	call := &node.Call{Op: op, Body: body, Consumer: consumer, RequestID: rec.RequestID, Header: req.Header, Capture: a.opts.CaptureContent}
	switch op {
	case openai.OpChat:
		r, perr := openai.ParseChat(body)
		if perr != nil {
			return fail(perr)
		}
		call.Route, call.Model, call.Stream, call.Chat = r.Model, r.Model, r.Stream, r
	case openai.OpEmbeddings:
		r, perr := openai.ParseEmbeddings(body)
		if perr != nil {
			return fail(perr)
		}
		call.Route, call.Model, call.Embeddings = r.Model, r.Model, r
	case openai.OpResponses:
		r, perr := openai.ParseResponses(body)
		if perr != nil {
			return fail(perr)
		}
		call.Route, call.Model, call.Stream, call.Responses = r.Model, r.Model, r.Stream, r
	}
	if req.URL.RawQuery != "" { // (Query parses it into a new map)
		call.APIVersion = req.URL.Query().Get("api-version")
	}
	if deployment != "" {
		call.Route = deployment
	} else if call.Route == "" {
		return fail(openai.BadRequest("model", "Missing required parameter: 'model'."))
	}
	rec.Route = call.Route
	if !a.gw.HasRoute(call.Route) {
		return fail(openai.ModelNotFound(call.Route))
	}
	label.route = call.Route

	out := a.gw.Serve(ctx, w, call)
	total := a.now().Sub(start)
	a.metrics.request(label, out.Status, out.Backend, total, max(total-out.Upstream, 0))
	rec.Backend, rec.Status, rec.Cache, rec.Refusal, rec.Aborted, rec.Attempts = out.Backend, out.Status, out.Cache, out.Refusal, out.Aborted, out.Attempts
	rec.PromptTokens, rec.CompletionTokens, rec.CachedTokens = out.Prompt, out.Completion, out.Cached
	rec.Distance, rec.Saved, rec.SavedPrompt, rec.ResponseID = out.Distance, out.Saved, out.SavedPrompt, out.ResponseID
	rec.Duration, rec.Upstream = total, out.Upstream
	if call.Capture {
		rec.Prompt, rec.Completion = body, out.Answer
	}
	a.observe(req, &rec)
	if out.Status >= 500 || out.Aborted != "" {
		a.log.Warn("request failed", "request_id", call.RequestID, "consumer", consumer.Name, "route", call.Route,
			"status", out.Status, "backend", out.Backend, "attempts", out.Attempts, "aborted", out.Aborted, "duration", total)
	} else if a.log.Enabled(req.Context(), slog.LevelDebug) {
		a.log.Debug("request", "request_id", call.RequestID, "consumer", consumer.Name, "route", call.Route,
			"status", out.Status, "backend", out.Backend, "attempts", out.Attempts, "duration", total)
	}
	return nil
}

// observe hands a finished request to the observer, if there is one.
func (a *API) observe(req *http.Request, rec *telemetry.Request) {
	if a.opts.Observer == nil {
		return
	}
	if rec.Cache == "" {
		rec.Cache = "off"
	}
	a.opts.Observer.Observe(context.WithoutCancel(req.Context()), rec)
}

// authenticate finds the request's consumer: by the configuration's keys
// first (the common case, one map look-up), then through identity
// (run-time keys, bearer tokens).
func (a *API) authenticate(req *http.Request) (*node.Consumer, *openai.Error) {
	cred := consumerKey(req.Header)
	c, aerr := a.gw.Authenticate(cred)
	if aerr == nil || cred == "" || a.opts.Identity == nil {
		a.countAuth(cred, c)
		return c, aerr
	}
	p, err := a.opts.Identity.Authenticate(req.Context(), cred)
	if err != nil {
		a.countAuth(cred, nil)
		var r *identity.Refusal
		if errors.As(err, &r) {
			return nil, openai.InvalidKey(r.Reason)
		}
		return nil, aerr
	}
	base, ok := a.gw.Consumer(p.Consumer)
	if !ok {
		a.countAuth(cred, nil)
		return nil, openai.InvalidKey("The credential belongs to consumer '" + p.Consumer + "', which this gateway does not configure.")
	}
	c = base.WithCredential(p.Kind, p.Issuer, p.User)
	a.countAuth(cred, c)
	return c, nil
}

// credentialLabel names what authenticated c for logs and metrics: its kind,
// and for a token its issuer. Never the credential.
func credentialLabel(c *node.Consumer) string {
	if c.Issuer != "" {
		return c.Credential + ":" + c.Issuer
	}
	return c.Credential
}

// consumerKey finds the consumer key in any of the three headers clients use.
func consumerKey(h http.Header) string {
	if k := h.Get(headerAPIKey); k != "" {
		return k
	}
	if v := h.Get("Authorization"); v != "" {
		if k, ok := cutPrefixFold(v, "Bearer "); ok {
			return strings.TrimSpace(k)
		}
	}
	return h.Get(headerAPIMKey)
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}

// readBody reads the whole body within the size limit. The read deadline is
// the server's (see internal/edge): it counts from the request's first byte.
func (a *API) readBody(w http.ResponseWriter, req *http.Request) ([]byte, *openai.Error) {
	limit := a.opts.MaxBodyBytes
	if req.ContentLength > limit {
		w.Header().Set("Connection", "close")
		return nil, openai.TooLarge(limit)
	}
	size := req.ContentLength
	if size < 0 || size > limit {
		size = 512
	}
	buf := make([]byte, 0, size+1)
	body, err := readAllInto(buf, http.MaxBytesReader(w, req.Body, limit))
	if err != nil {
		// Drop the connection: the server must not wait to drain the rest of
		// a body that is too slow or too large.
		w.Header().Set("Connection", "close")
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, openai.TooLarge(limit)
		}
		return nil, openai.BadRequest("", "Could not read the request body: "+err.Error())
	}
	return body, nil
}

func readAllInto(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				return b, nil
			}
			return b, err
		}
	}
}

// models lists the routes as OpenAI models.
func (a *API) models(c echo.Context) error {
	c.Response().Header().Set(node.HeaderCache, "bypass") // listings are never cached
	consumer, e := a.authenticate(c.Request())
	if e != nil {
		e.Write(c.Response())
		return nil
	}
	a.gw.LimitHeaders(c.Request().Context(), c.Response().Header(), consumer, c.Request().Header, "")
	var sb strings.Builder
	sb.WriteString(`{"object":"list","data":[`)
	for i, name := range a.gw.Routes() {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(modelObject(name))
	}
	sb.WriteString("]}")
	return c.JSONBlob(http.StatusOK, []byte(sb.String()))
}

// model describes one route as an OpenAI model.
func (a *API) model(c echo.Context) error {
	c.Response().Header().Set(node.HeaderCache, "bypass")
	consumer, e := a.authenticate(c.Request())
	if e != nil {
		e.Write(c.Response())
		return nil
	}
	a.gw.LimitHeaders(c.Request().Context(), c.Response().Header(), consumer, c.Request().Header, "")
	name := c.Param("model")
	if !a.gw.HasRoute(name) {
		openai.ModelNotFound(name).Write(c.Response())
		return nil
	}
	return c.JSONBlob(http.StatusOK, []byte(modelObject(name)))
}

func modelObject(name string) string {
	id, _ := json.Marshal(name)
	return `{"id":` + string(id) + `,"object":"model","created":0,"owned_by":"llmgate"}`
}

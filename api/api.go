package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/llmgate/llmgate/cluster"
	"github.com/llmgate/llmgate/identity"

	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/node"
	"github.com/llmgate/llmgate/telemetry"
)

// Options configure the HTTP front.
type Options struct {
	Logger *slog.Logger
	// Registry receives the request metrics; Gatherer serves /metrics.
	Registry prometheus.Registerer
	Gatherer prometheus.Gatherer
	// MaxBodyBytes is the largest request body accepted (413 above).
	MaxBodyBytes int64
	// AdminToken guards the admin routes; empty opens them to loopback clients only.
	AdminToken string
	// NodeName and GossipAddr describe this node on /admin/cluster.
	NodeName   string
	GossipAddr string
	Now        func() time.Time
	// Cache and Quota back the admin routes for cache and quota; nil when the
	// node runs without them.
	Cache CacheAdmin
	Quota QuotaAdmin
	// Storage explains on /readyz why storing is paused (a full data
	// disk); nil = nothing to say. The node stays ready: it serves.
	Storage interface{ Detail() string }
	// Cluster lists the members on /admin/cluster; nil = this node alone.
	Cluster ClusterView
	// Usage answers /admin/usage; nil = the route answers 404.
	Usage UsageAdmin
	// Observer receives every finished data-plane request (request log,
	// usage history, per-consumer metrics); nil = none.
	Observer telemetry.Observer
	// Tracer starts each data-plane request's trace (a W3C traceparent from
	// the client is its parent); nil = no tracing.
	Tracer trace.Tracer
	// CaptureContent puts the request body and the answer in the records
	// the Observer gets.
	CaptureContent bool
	// Identity authenticates what the configuration's keys do not: run-time
	// keys and bearer tokens (*identity.Identity); nil = configuration keys only.
	Identity Authenticator
	// Keys backs /admin/consumers/{name}/keys (*identity.Keys); nil = 404.
	Keys KeyAdmin
	// Reload serves POST /admin/config/reload; nil = not supported (404).
	Reload ReloadFunc
}

// Authenticator is what the data plane needs from identity.
type Authenticator interface {
	// Authenticate returns who presents credential: identity.ErrNotMine if
	// it knows no such credential, an *identity.Refusal if it refuses it.
	Authenticate(ctx context.Context, credential string) (identity.Principal, error)
}

// ClusterView is what /admin/cluster needs: implemented by *cluster.Cluster.
type ClusterView interface {
	Members() []cluster.Member
}

// API serves one node's HTTP routes.
type API struct {
	gw      *node.Gateway
	opts    Options
	log     *slog.Logger
	now     func() time.Time
	ready   atomic.Bool
	metrics *metrics
	auths   *prometheus.CounterVec // authentications by credential kind, issuer and result
	// serverSpan is the start option of every request's span, built once.
	serverSpan []trace.SpanStartOption
	spanAttrs  sync.Pool // *[spanAttrsMax]attribute.KeyValue, for endTrace
}

// New builds the HTTP front for gw.
func New(gw *node.Gateway, opts Options) (*API, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Registry == nil {
		reg := prometheus.NewRegistry()
		opts.Registry, opts.Gatherer = reg, reg
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 4 << 20
	}
	m, err := newMetrics(opts.Registry, gw.Routes())
	if err != nil {
		return nil, err
	}
	a := &API{gw: gw, opts: opts, log: opts.Logger, now: opts.Now, metrics: m,
		serverSpan: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}}
	if a.auths, err = newAuthMetrics(opts.Registry); err != nil {
		return nil, err
	}
	a.ready.Store(true)
	return a, nil
}

// SetReady flips /readyz; a draining node reports not ready before it stops.
func (a *API) SetReady(ready bool) { a.ready.Store(ready) }

// DataHandler serves the data plane.
func (a *API) DataHandler() http.Handler {
	e := newEcho()
	e.Use(a.requestID)
	e.POST("/v1/chat/completions", a.openAIStyle(openai.OpChat))
	e.POST("/v1/embeddings", a.openAIStyle(openai.OpEmbeddings))
	e.GET("/v1/models", a.models)
	e.GET("/v1/models/:model", a.model)
	e.POST("/openai/deployments/:deployment/chat/completions", a.azureStyle(openai.OpChat))
	e.POST("/openai/deployments/:deployment/embeddings", a.azureStyle(openai.OpEmbeddings))
	a.routeResponsesAndAzureV1(e)
	e.GET("/healthz", func(c echo.Context) error {
		return c.JSONBlob(http.StatusOK, []byte(`{"status":"ok"}`))
	})
	e.GET("/readyz", func(c echo.Context) error {
		if !a.ready.Load() {
			c.Response().Header().Set("Retry-After", "1")
			return c.JSONBlob(http.StatusServiceUnavailable, []byte(`{"status":"draining"}`))
		}
		if a.opts.Storage != nil {
			if d := a.opts.Storage.Detail(); d != "" {
				b, _ := json.Marshal(map[string]string{"status": "ready", "storage": d})
				return c.JSONBlob(http.StatusOK, b)
			}
		}
		return c.JSONBlob(http.StatusOK, []byte(`{"status":"ready"}`))
	})
	return e
}

func newEcho() *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	// Never trust X-Forwarded-For from clients: the gateway is the edge.
	e.IPExtractor = echo.ExtractIPDirect()
	e.HTTPErrorHandler = errorHandler
	return e
}

// errorHandler renders echo's own errors (unknown path, wrong method) in the
// OpenAI error format.
func errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var oe *openai.Error
	if he, ok := err.(*echo.HTTPError); ok {
		switch he.Code {
		case http.StatusNotFound:
			oe = &openai.Error{Status: he.Code, Type: "invalid_request_error", Code: openai.CodeNotFound,
				Message: "Unknown route " + c.Request().Method + " " + c.Request().URL.Path + "."}
		case http.StatusMethodNotAllowed:
			oe = &openai.Error{Status: he.Code, Type: "invalid_request_error", Code: openai.CodeMethodNotAllowed,
				Message: "Method " + c.Request().Method + " is not allowed on " + c.Request().URL.Path + "."}
		default:
			oe = &openai.Error{Status: he.Code, Type: "invalid_request_error", Code: openai.CodeInvalidRequest, Message: http.StatusText(he.Code)}
		}
	} else {
		oe = &openai.Error{Status: http.StatusInternalServerError, Type: "server_error", Code: openai.CodeInternal, Message: "Internal error."}
	}
	oe.Write(c.Response())
}

// requestID echoes a sane client x-request-id or makes one.
func (a *API) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(headerRequestIDKey)
		if !validRequestID(id) {
			id = newRequestID()
		}
		c.Response().Header().Set(headerRequestIDKey, id)
		c.Set("request_id", id)
		return next(c)
	}
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

package mock

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/internal/tokens"
)

const (
	// DefaultCompletionTokens is the length of a chat answer when the request
	// sets neither max_tokens nor max_completion_tokens. It is also the
	// completion allowance charged against the TPM limit for such requests.
	DefaultCompletionTokens = 32

	// MaxCompletionTokens is the largest max_tokens the mock accepts; larger
	// requests are answered 400, as a real model answers a limit over its own.
	MaxCompletionTokens = 32768

	// DefaultDimensions is the length of an embedding when the request does
	// not set dimensions.
	DefaultDimensions = 384

	// MaxDimensions is the largest dimensions an embeddings request may ask for.
	MaxDimensions = 3072

	// DefaultName is the x-mock-backend value of a Server without a Name.
	DefaultName = "mock"

	// maxBodyBytes bounds a request body, well above the gateway's own limit.
	maxBodyBytes = 32 << 20
)

// Options configures a Server. The zero value is a valid configuration: no
// latency, instant answers, no limit, no failures, no key.
type Options struct {
	// Latency is the time to first token: how long a successful chat or
	// embeddings answer waits before its first byte. Errors are answered at
	// once. Zero means none (the command line's default is 20ms).
	Latency time.Duration

	// TokenRate is the number of generated tokens per second per request:
	// streamed tokens are paced at this rate after the first, and a
	// non-streaming answer waits as long as its stream would have taken.
	// Zero means instant.
	TokenRate float64

	// TPM is the mock's own tokens-per-minute limit over a sliding 60-second
	// window. A request is charged at admission its prompt tokens plus its
	// completion allowance (max_tokens, else DefaultCompletionTokens) times
	// n; when the charge does not fit, the answer is 429 with retry-after-ms
	// and Retry-After. Zero means no limit, and then no x-ratelimit-* headers
	// are sent.
	TPM int64

	// FailRate is the share of requests, from 0 to 1, answered 500 (checked
	// after the API key, before routing). Values outside [0, 1] are clamped.
	FailRate float64

	// APIKey, if set, must arrive in the api-key header or as
	// "Authorization: Bearer KEY"; otherwise the answer is 401.
	APIKey string

	// Name is sent in the x-mock-backend header of every answer. Empty means
	// DefaultName.
	Name string

	// Seed seeds the random source that decides which requests fail.
	Seed int64

	// Now is the clock of the TPM window and of created timestamps. Nil means
	// time.Now.
	Now func() time.Time

	// Counter counts prompt tokens. Nil means a new one.
	Counter *tokens.Counter

	// CutStreamsAfter, when positive, breaks off every streamed answer
	// (chat and Responses) after that many events: the connection closes
	// mid-stream, without [DONE] or a terminal event, as a failing backend's
	// would.
	CutStreamsAfter int
}

// Server is the simulated backend. Create it with New; it is safe for
// concurrent use.
type Server struct {
	name      string
	apiKey    string
	tokenRate float64
	cutAfter  int // Options.CutStreamsAfter
	now       func() time.Time
	counter   *tokens.Counter
	mux       *http.ServeMux
	window    *tpmWindow // nil when there is no TPM limit
	responses *responseStore

	latency  atomic.Int64  // time.Duration
	failRate atomic.Uint64 // math.Float64bits of a value in [0, 1]
	requests atomic.Int64

	rngMu sync.Mutex
	rng   *mrand.Rand // decides failures; guarded by rngMu
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	s := &Server{
		name:      opts.Name,
		apiKey:    opts.APIKey,
		tokenRate: max(opts.TokenRate, 0),
		cutAfter:  max(opts.CutStreamsAfter, 0),
		now:       opts.Now,
		counter:   opts.Counter,
		responses: newResponseStore(),
		rng:       mrand.New(mrand.NewPCG(uint64(opts.Seed), uint64(opts.Seed)^0x9e3779b97f4a7c15)),
	}
	if s.name == "" {
		s.name = DefaultName
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.counter == nil {
		s.counter = tokens.NewCounter()
	}
	if opts.TPM > 0 {
		s.window = newTPMWindow(opts.TPM)
	}
	s.SetLatency(opts.Latency)
	s.SetFailRate(opts.FailRate)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /openai/deployments/{deployment}/chat/completions", s.handleChat)
	mux.HandleFunc("POST /openai/deployments/{deployment}/embeddings", s.handleEmbeddings)
	mux.HandleFunc("POST /v1/chat/completions", s.handleChat)
	mux.HandleFunc("POST /v1/embeddings", s.handleEmbeddings)
	mux.HandleFunc("GET /v1/models", s.handleModels)
	// Azure's v1 surface: the OpenAI routes under /openai/v1/, model in the
	// body, no api-version; and the preview routes under /openai/ that take one.
	mux.HandleFunc("POST /openai/v1/chat/completions", s.handleChat)
	mux.HandleFunc("POST /openai/v1/embeddings", s.handleEmbeddings)
	mux.HandleFunc("GET /openai/v1/models", s.handleModels)
	mux.HandleFunc("GET /openai/models", s.handleModels)
	for _, prefix := range []string{"/v1", "/openai/v1", "/openai"} {
		mux.HandleFunc("POST "+prefix+"/responses", s.handleResponsesCreate)
		mux.HandleFunc("GET "+prefix+"/responses/{id}", s.handleResponseGet)
		mux.HandleFunc("DELETE "+prefix+"/responses/{id}", s.handleResponseDelete)
		mux.HandleFunc("POST "+prefix+"/responses/{id}/cancel", s.handleResponseCancel)
		mux.HandleFunc("GET "+prefix+"/responses/{id}/input_items", s.handleResponseInputItems)
	}
	mux.HandleFunc("/", s.handleNotFound)
	s.mux = mux
	return s
}

// SetFailRate sets the share of requests answered 500, from 0 to 1 (values
// outside are clamped). It takes effect for the next request.
func (s *Server) SetFailRate(f float64) {
	if math.IsNaN(f) || f < 0 {
		f = 0
	}
	s.failRate.Store(math.Float64bits(min(f, 1)))
}

// SetLatency sets the time to first token (negative means none). It takes
// effect for the next request.
func (s *Server) SetLatency(d time.Duration) {
	s.latency.Store(int64(max(d, 0)))
}

// Requests returns the number of requests received, whatever their answer.
func (s *Server) Requests() int64 { return s.requests.Load() }

// ServeHTTP answers one request: identity headers, then the API key, then
// the injected failures, then the route. Errors take the shape of the route's
// dialect: Azure's {"error":{"code","message"}} on /openai/ routes, OpenAI's
// {"error":{"message","type","param","code"}} on the others; both carry
// error.code and error.message. Request validation errors are OpenAI's on
// both, as Azure OpenAI's are.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	id := newRequestID()
	h := w.Header()
	h.Set("x-mock-backend", s.name)
	h.Set("apim-request-id", id)
	h.Set("x-request-id", id)

	st := styleOf(r.URL.Path)
	if !s.authorized(r) {
		if st == azureStyle {
			writeAzureError(w, http.StatusUnauthorized, "401", "Access denied due to invalid subscription key or wrong API endpoint. "+
				"Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.", nil)
			return
		}
		openai.InvalidKey("Incorrect API key provided.").Write(w)
		return
	}
	if s.shouldFail() {
		const msg = "The server had an error while processing your request. Sorry about that!"
		if st == azureStyle {
			writeAzureError(w, http.StatusInternalServerError, "InternalServerError", msg, nil)
			return
		}
		(&openai.Error{Status: http.StatusInternalServerError, Type: "server_error", Code: openai.CodeInternal, Message: msg}).Write(w)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) authorized(r *http.Request) bool {
	if s.apiKey == "" {
		return true
	}
	want := []byte(s.apiKey)
	if k := r.Header.Get("api-key"); k != "" && subtle.ConstantTimeCompare([]byte(k), want) == 1 {
		return true
	}
	if k, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && subtle.ConstantTimeCompare([]byte(k), want) == 1 {
		return true
	}
	return false
}

func (s *Server) shouldFail() bool {
	f := math.Float64frombits(s.failRate.Load())
	switch {
	case f <= 0:
		return false
	case f >= 1:
		return true
	}
	s.rngMu.Lock()
	x := s.rng.Float64()
	s.rngMu.Unlock()
	return x < f
}

// style is the wire dialect of a route, which decides how its errors look.
type style int

const (
	openAIStyle style = iota
	azureStyle
)

func styleOf(path string) style {
	if strings.HasPrefix(path, "/openai/") {
		return azureStyle
	}
	return openAIStyle
}

// route is what a model route's handler learns from the request line.
type route struct {
	style      style
	deployment string // Azure style only
	apiVersion string // Azure style only
}

// routeOf reads the route of r and, for the Azure style, checks the
// api-version parameter. It writes the error and returns false if there is one.
func routeOf(w http.ResponseWriter, r *http.Request) (route, bool) {
	rt := route{style: styleOf(r.URL.Path), deployment: r.PathValue("deployment"), apiVersion: r.URL.Query().Get("api-version")}
	// Azure's v1 routes need no api-version; its other routes do.
	if rt.style == azureStyle && rt.apiVersion == "" && !strings.HasPrefix(r.URL.Path, "/openai/v1/") {
		writeAzureError(w, http.StatusBadRequest, "MissingApiVersionParameter",
			"The api-version query parameter (?api-version=) is required for all requests.", nil)
		return rt, false
	}
	return rt, true
}

// model returns the model a request addresses: the deployment for the Azure
// style, the body's model for the OpenAI style (an error if it is missing).
func (rt route) model(bodyModel string) (string, *openai.Error) {
	if rt.deployment != "" {
		return rt.deployment, nil
	}
	if bodyModel == "" {
		return "", openai.BadRequest("model", "You must provide a model parameter.")
	}
	return bodyModel, nil
}

// modelCall is one validated model request.
type modelCall[T any] struct {
	rt    route
	body  []byte
	req   T
	model string // the deployment (Azure style) or the body's model
}

// decodeCall reads and validates a model request with parse; bodyModel names
// the model field of the parsed request. It writes the error and returns
// false if there is one.
func decodeCall[T any](w http.ResponseWriter, r *http.Request, parse func([]byte) (T, *openai.Error), bodyModel func(T) string) (modelCall[T], bool) {
	var c modelCall[T]
	var ok bool
	if c.rt, ok = routeOf(w, r); !ok {
		return c, false
	}
	if c.body, ok = readBody(w, r); !ok {
		return c, false
	}
	var perr *openai.Error
	if c.req, perr = parse(c.body); perr != nil {
		perr.Write(w)
		return c, false
	}
	if c.model, perr = c.rt.model(bodyModel(c.req)); perr != nil {
		perr.Write(w)
		return c, false
	}
	return c, true
}

// readBody reads a request body, writing a 413 or 400 if it cannot.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			openai.TooLarge(tooLarge.Limit).Write(w)
		} else {
			openai.BadRequest("", "Reading the request body failed: "+err.Error()).Write(w)
		}
		return nil, false
	}
	return body, true
}

// admit charges cost tokens against the TPM window and sets the rate-limit
// headers. If the charge does not fit it writes the 429 and returns false.
func (s *Server) admit(w http.ResponseWriter, rt route, op, model string, cost int64) bool {
	if s.window == nil {
		return true
	}
	a := s.window.admit(s.now(), cost)
	h := w.Header()
	h.Set("x-ratelimit-limit-tokens", strconv.FormatInt(s.window.limit, 10))
	h.Set("x-ratelimit-remaining-tokens", strconv.FormatInt(a.remainingTokens, 10))
	h.Set("x-ratelimit-limit-requests", strconv.FormatInt(s.window.rpm, 10))
	h.Set("x-ratelimit-remaining-requests", strconv.FormatInt(a.remainingRequests, 10))
	if a.ok {
		return true
	}
	ms := (a.retryAfter + time.Millisecond - 1) / time.Millisecond
	secs := (a.retryAfter + time.Second - 1) / time.Second
	hdr := http.Header{
		"Retry-After":    {strconv.FormatInt(int64(secs), 10)},
		"Retry-After-Ms": {strconv.FormatInt(int64(ms), 10)},
	}
	if rt.style == azureStyle {
		writeAzureError(w, http.StatusTooManyRequests, "429", fmt.Sprintf(
			"Requests to the %s Operation under Azure OpenAI API version %s have exceeded token rate limit of your current pricing tier. "+
				"Please retry after %d seconds.", op, rt.apiVersion, secs), hdr)
		return false
	}
	e := &openai.Error{
		Status: http.StatusTooManyRequests, Type: "tokens", Code: openai.CodeRateLimitExceeded, Header: hdr,
		Message: fmt.Sprintf("Rate limit reached for %s on tokens per min (TPM): Limit %d, Used %d, Requested %d. Please try again in %s.",
			model, s.window.limit, s.window.limit-a.remainingTokens, cost, a.retryAfter.Round(time.Millisecond)),
	}
	e.Write(w)
	return false
}

type azureErrorBody struct {
	Error azureErrorDetail `json:"error"`
}

type azureErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeAzureError writes Azure's error body {"error":{"code","message"}}.
func writeAzureError(w http.ResponseWriter, status int, code, message string, extra http.Header) {
	h := w.Header()
	for k, vs := range extra {
		h[http.CanonicalHeaderKey(k)] = vs
	}
	b, _ := json.Marshal(azureErrorBody{Error: azureErrorDetail{Code: code, Message: message}})
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	if styleOf(r.URL.Path) == azureStyle {
		writeAzureError(w, http.StatusNotFound, "404", "Resource not found", nil)
		return
	}
	(&openai.Error{Status: http.StatusNotFound, Type: "invalid_request_error", Code: openai.CodeNotFound,
		Message: "Invalid URL (" + r.Method + " " + r.URL.Path + ")"}).Write(w)
}

// models are the ids GET /v1/models lists. The mock answers any model name;
// this is what a client that asks sees.
var models = []string{"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "text-embedding-3-small", "text-embedding-3-large"}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	if _, ok := routeOf(w, r); !ok {
		return
	}
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list"}
	for _, id := range models {
		list.Data = append(list.Data, model{ID: id, Object: "model", Created: 1715367049, OwnedBy: "llmgate-mock"})
	}
	writeJSON(w, list)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		(&openai.Error{Status: http.StatusInternalServerError, Type: "server_error", Code: openai.CodeInternal,
			Message: "encoding the answer: " + err.Error()}).Write(w)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// sleep waits d or until ctx is done, whichever comes first, and reports
// whether the full wait elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// newRequestID returns a random UUID (version 4), the shape of Azure's
// apim-request-id.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&0x0f])
	}
	return string(out)
}

// cut breaks off the stream being answered once sent events went out, when
// the server is told to (Options.CutStreamsAfter): the handler aborts, so
// the connection closes without the stream's proper end.
func (s *Server) cut(sent int) {
	if s.cutAfter > 0 && sent >= s.cutAfter {
		panic(http.ErrAbortHandler)
	}
}

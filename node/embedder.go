package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"

	"github.com/llmgate/llmgate/internal/embed"
	"github.com/llmgate/llmgate/internal/openai"
)

// Embedder turns a prompt's retained dialog text into a vector for the
// cache's semantic tier. Called once per cacheable request on the request's
// goroutine, under the cache's embed deadline; an error makes the request go
// uncached, never fail. The returned slice belongs to the caller.
type Embedder interface {
	Embed(ctx context.Context, text string) ([]float32, error)
}

// LocalEmbedder is the built-in, offline embedder.
type LocalEmbedder struct{ *embed.Local }

// Embed implements Embedder.
func (l LocalEmbedder) Embed(_ context.Context, text string) ([]float32, error) {
	return l.Local.Embed(text), nil
}

// RouteEmbedder embeds through one of the gateway's own embeddings routes,
// with the route's backends, failover and breakers. Its calls are the
// gateway's, not a consumer's: they are not charged to anyone's limits.
type RouteEmbedder struct {
	g     *Gateway
	Route string
}

// RouteEmbedder returns an embedder that calls route through g's backends
// (llmgate cache calibrate uses it to embed labelled pairs the way the
// node's cache does).
func (g *Gateway) RouteEmbedder(route string) *RouteEmbedder {
	return &RouteEmbedder{g: g, Route: route}
}

// Embed implements Embedder.
func (r *RouteEmbedder) Embed(ctx context.Context, text string) ([]float32, error) {
	rt, ok := r.g.routes[r.Route]
	if !ok {
		return nil, fmt.Errorf("embedding route %q does not exist", r.Route)
	}
	body, err := json.Marshal(map[string]string{"model": r.Route, "input": text})
	if err != nil {
		return nil, fmt.Errorf("encoding embeddings request: %w", err)
	}
	call := &Call{Op: openai.OpEmbeddings, Route: r.Route, Model: r.Route, Body: body, Header: http.Header{}}
	x := &exchange{call: call}
	var sink discardWriter
	out := r.g.forward(ctx, &sink, call, rt, x)
	if x.reply == nil || x.reply.status != http.StatusOK {
		return nil, fmt.Errorf("embedding through route %s: status %d", r.Route, out.Status)
	}
	var list struct {
		Data []struct {
			Embedding []float32 `json:"embedding"`
		} `json:"data"`
	}
	if err := json.Unmarshal(x.reply.body, &list); err != nil {
		return nil, fmt.Errorf("decoding embeddings from route %s: %w", r.Route, err)
	}
	if len(list.Data) == 0 || len(list.Data[0].Embedding) == 0 {
		return nil, errors.New("embeddings reply from route " + r.Route + " has no vector")
	}
	return normalize(list.Data[0].Embedding)
}

// normalize scales v to unit length; the index compares by dot product.
func normalize(v []float32) ([]float32, error) {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	if s == 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return nil, errors.New("embedding has no direction (zero or non-finite)")
	}
	inv := float32(1 / math.Sqrt(s))
	for i := range v {
		v[i] *= inv
	}
	return v, nil
}

// discardWriter is the ResponseWriter for the gateway's own calls: what
// forward writes on failure is not for any client.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header {
	if d.h == nil {
		d.h = http.Header{}
	}
	return d.h
}
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

package telemetry

import (
	"context"
	"time"
)

// Request is one finished data-plane request as the request log, the usage
// history and the metrics see it. Zero values mean "not known" or "not
// applicable" (no consumer on a 401, no backend on a hit or a refusal).
type Request struct {
	Time      time.Time // arrival
	RequestID string
	Consumer  string
	// User is the end user, when known (limits.user_header, or a token's
	// user claim).
	User string
	// Credential is the kind of credential that authenticated the consumer
	// (api_key, jwt, …); empty when none did.
	Credential string
	Route      string
	Op         string // chat.completions, embeddings, …
	Backend    string
	Status     int
	// Tokens the request was charged: the reply's usage (or the gateway's
	// count when the reply had none). Cached is the part of Prompt the
	// backend served from its own prompt cache (prompt_tokens_details).
	PromptTokens, CompletionTokens, CachedTokens int64
	// Cache is hit, miss, bypass or off; Distance is the match's cosine
	// distance on a hit (0 for an exact hit).
	Cache    string
	Distance float64
	// Saved is what a cache hit spared: the stored answer's token usage;
	// SavedPrompt the prompt part of it.
	Saved, SavedPrompt int64
	Duration           time.Duration // arrival to the last byte
	Upstream           time.Duration // waiting on backends, all attempts
	// Refusal is the error code when the gateway refused or failed the
	// request (invalid_api_key, model_not_found, rate_limit_exceeded,
	// quota_exceeded, backend_unavailable, …).
	Refusal string
	// Aborted is "client" or "upstream" when a stream or an answer ended early.
	Aborted  string
	Attempts int
	// ResponseID is the answer's id (chatcmpl-…), when it has one.
	ResponseID string
	// Prompt and Completion are captured content (capture_content), nil
	// otherwise: the request body and the answer, not yet capped.
	Prompt, Completion []byte
}

// Observer receives each finished request once. It must not block and must
// not keep the record's byte slices after returning.
type Observer interface {
	Observe(ctx context.Context, r *Request)
}

// Observers fans a request out to several observers, in order.
type Observers []Observer

// Observe implements Observer.
func (os Observers) Observe(ctx context.Context, r *Request) {
	for _, o := range os {
		o.Observe(ctx, r)
	}
}

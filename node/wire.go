package node

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/internal/tokens"
)

// wire is one operation's wire format: what the pipeline (authenticate →
// look up → admit → forward → settle → store) asks of a request and of its
// answer. There is one per operation — chat (wire_chat.go), embeddings, the
// Responses API (wire_responses.go) — so the pipeline never branches on the
// format and a new operation is one new file.
type wire interface {
	// estimate is the prompt estimate and the whole reservation.
	estimate(g *Gateway, call *Call) (prompt, total int64)
	// dialog is what the cache keys and embeds: the messages, the sampling
	// temperature; ok is false when the request must not use the cache.
	dialog(call *Call) (msgs []openai.Message, temperature *float64, ok bool)
	// upstreamBody adapts the client's body for a backend: usageOK says
	// whether the backend can be asked for a stream's usage.
	upstreamBody(call *Call, body []byte, usageOK bool) []byte
	// read reads a whole answer with status 200: its usage (nil if absent),
	// whether the cache may store it, and its text (counted when usage is
	// absent).
	read(body []byte) (u *usage, storable bool, text string)
	// tap watches a relayed stream.
	tap(call *Call, capture bool) streamWatcher
	// replay renders a stored answer as the stream a backend would send.
	replay(call *Call, stored []byte) []byte
	// replayable reports whether a stored answer can serve call.
	replayable(call *Call, stored []byte) bool
	// follows is the id of a stored response the request continues ("" for
	// none): it must belong to the caller and goes to the backend holding it.
	follows(call *Call) string
	// created is the id of the response the answer created and the backend
	// now holds ("" for none).
	created(x *exchange) string
	// hit is a stored answer as a cache hit serves it, and its id.
	hit(ctx context.Context, g *Gateway, call *Call, stored []byte) (body []byte, id string)
}

// streamWatcher reads a relayed stream event by event.
type streamWatcher interface {
	// see reads one event's data and reports whether to relay it.
	see(data []byte) bool
	// ended reports whether the event just seen was the stream's last (the
	// Responses API's terminal event; chat streams end with [DONE]).
	ended() bool
	// usage is what the stream consumed (also for an aborted stream).
	usage(g *Gateway, x *exchange) *usage
	// completion is the answer to store, or nil when it must not be.
	completion() []byte
	// responseID is the answer's id ("" until seen).
	responseID() string
	// broken is the event that tells the client the backend broke off, in
	// the stream's own error shape.
	broken(e *openai.Error) []byte
}

// wireOf returns call's wire format.
func wireOf(call *Call) wire {
	switch call.Op {
	case openai.OpResponses:
		return responsesWire{}
	case openai.OpEmbeddings:
		return embeddingsWire{}
	}
	return chatWire{}
}

// chatWire is /chat/completions.
type chatWire struct{}

func (chatWire) estimate(g *Gateway, call *Call) (prompt, total int64) {
	r := call.Chat
	if r == nil {
		return 0, 0
	}
	prompt = int64(g.counter.CountChat(call.Route, r.Messages))
	return prompt, prompt + chatCompletionPart(g, r)
}

// chatCompletionPart is the completion allowance a chat request reserves:
// its own output limit, or the default, for each of its n choices.
func chatCompletionPart(g *Gateway, r *openai.ChatRequest) int64 {
	allowance := r.CompletionAllowance()
	if allowance <= 0 {
		allowance = g.limits.DefaultCompletionTokens
	}
	n := int64(1)
	if r.N != nil {
		n = *r.N
	}
	return min(allowance, maxAllowance) * n
}

// bound is an upper bound of estimate's total, from byte lengths alone
// (tokens.ChatBound).
func (chatWire) bound(g *Gateway, call *Call) (int64, bool) {
	if call.Chat == nil {
		return 0, false
	}
	return int64(tokens.ChatBound(call.Chat.Messages)) + chatCompletionPart(g, call.Chat), true
}

func (chatWire) dialog(call *Call) ([]openai.Message, *float64, bool) {
	if call.Chat == nil {
		return nil, nil, false
	}
	return call.Chat.Messages, call.Chat.Temperature, true
}

func (chatWire) upstreamBody(call *Call, body []byte, usageOK bool) []byte {
	if call.Stream && call.Chat != nil && usageOK && (call.Chat.StreamOptions == nil || !call.Chat.StreamOptions.IncludeUsage) {
		// Ask for the usage chunk so the stream settles exactly; the relay
		// hides it from this client, which did not ask for it.
		return withStreamUsage(body)
	}
	return body
}

func (chatWire) read(body []byte) (*usage, bool, string) {
	_, u, storable, text := readChat(body)
	return u, storable, text
}

func (chatWire) tap(call *Call, capture bool) streamWatcher { return newStreamTap(call, capture) }

func (chatWire) replay(call *Call, stored []byte) []byte {
	return replayStream(stored, call.Chat != nil && call.Chat.StreamOptions != nil && call.Chat.StreamOptions.IncludeUsage)
}

// replayable: tool calls are only replayed to non-streaming clients.
func (chatWire) replayable(call *Call, stored []byte) bool {
	return !call.Stream || !bytes.Contains(stored, []byte(`"tool_calls"`))
}

// embeddingsWire is /embeddings: never streamed, never cached.
type embeddingsWire struct{ chatWire }

func (embeddingsWire) estimate(g *Gateway, call *Call) (prompt, total int64) {
	if call.Embeddings == nil {
		return 0, 0
	}
	for _, in := range call.Embeddings.Inputs {
		if in.Tokens != nil {
			prompt += int64(len(in.Tokens))
		} else {
			prompt += int64(g.counter.Count(call.Route, in.Text))
		}
	}
	return prompt, prompt
}

// bound is an upper bound of estimate's total, from byte lengths alone
// (tokens.TextBound; pre-tokenized inputs are their length).
func (embeddingsWire) bound(_ *Gateway, call *Call) (int64, bool) {
	if call.Embeddings == nil {
		return 0, false
	}
	var n int64
	for _, in := range call.Embeddings.Inputs {
		if in.Tokens != nil {
			n += int64(len(in.Tokens))
		} else {
			n += int64(tokens.TextBound(in.Text))
		}
	}
	return n, true
}

func (embeddingsWire) dialog(*Call) ([]openai.Message, *float64, bool) { return nil, nil, false }

func (embeddingsWire) upstreamBody(_ *Call, body []byte, _ bool) []byte { return body }

func (embeddingsWire) read(body []byte) (*usage, bool, string) {
	var c completion
	if json.Unmarshal(body, &c) != nil {
		return nil, false, ""
	}
	return c.Usage, false, ""
}

var _ = http.StatusOK

// Response state hooks: chat and embeddings hold none.
func (chatWire) follows(*Call) string     { return "" }
func (chatWire) created(*exchange) string { return "" }

// hit: a chat answer is served as stored.
func (chatWire) hit(_ context.Context, _ *Gateway, _ *Call, stored []byte) ([]byte, string) {
	return stored, ""
}

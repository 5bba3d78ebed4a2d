package node

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/quota"
)

// exchange carries one call through the pipeline's stages.
type exchange struct {
	call  *Call
	adm   admission
	cache cachePlan
	// Exactly one of reply and stream is set once a backend answered.
	reply  *reply
	stream streamWatcher
	// pin is the one backend the call may go to (it holds the state the
	// call continues); nil = the route's groups.
	pin *backend
	// reached is set once a backend was sent the whole request and did not
	// refuse it with an error status: it may have spent the prompt, so the
	// call is charged at least the prompt estimate however it ends.
	reached bool
}

// usage is a reply's token usage.
type usage struct {
	Prompt     int64 `json:"prompt_tokens"`
	Completion int64 `json:"completion_tokens"`
	Total      int64 `json:"total_tokens"`
	// Details says how much of the prompt the backend's own prompt cache served.
	Details *struct {
		Cached int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details,omitempty"`
}

// total is the charge: the larger of total_tokens and the parts' sum, within
// what the limiter counts (a backend's absurd usage must not wrap counters).
func (u *usage) total() int64 {
	return min(max(u.Total, u.Prompt+u.Completion, 0), quota.MaxTokens)
}

// plausible reports whether a backend's usage can be charged as it is: no
// negative count and none beyond what the limiter counts.
func (u *usage) plausible() bool {
	return u.Prompt >= 0 && u.Completion >= 0 && u.Total >= 0 &&
		u.Prompt <= quota.MaxTokens && u.Completion <= quota.MaxTokens && u.Total <= quota.MaxTokens
}

// completion is the part of a chat.completion (or embeddings list) body the
// settle and store stages read.
type completion struct {
	ID      string             `json:"id"`
	Usage   *usage             `json:"usage"`
	Choices []completionChoice `json:"choices"`
}

type completionChoice struct {
	FinishReason *string `json:"finish_reason"`
	Message      struct {
		Content *string `json:"content"`
	} `json:"message"`
}

// chatCompletion is a stored chat.completion body: what streamTap assembles
// from a stream and replayStream plays back as one.
type chatCompletion struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           int64           `json:"created"`
	Model             string          `json:"model"`
	SystemFingerprint string          `json:"system_fingerprint,omitempty"`
	Choices           []chatChoice    `json:"choices"`
	Usage             json.RawMessage `json:"usage,omitempty"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      chatMessage     `json:"message"`
	Logprobs     json.RawMessage `json:"logprobs"` // null when written
	FinishReason string          `json:"finish_reason"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// cacheable reports whether the answer is a complete success worth storing:
// every choice finished normally and nothing was content-filtered.
func (c *completion) cacheable(body []byte) bool {
	if len(c.Choices) == 0 {
		return false
	}
	for _, ch := range c.Choices {
		if ch.FinishReason == nil {
			return false
		}
		switch *ch.FinishReason {
		case "stop", "length", "tool_calls", "function_call":
		default:
			return false // content_filter, or something this gateway does not know
		}
	}
	return !contentFiltered(body)
}

// contentFiltered reports whether Azure's content filter results in body
// (prompt_filter_results, content_filter_results, in answers and in stream
// chunks) mark anything as filtered. body is JSON its caller has already
// decoded. Azure sends "filtered":false in every answer and stream chunk, so
// only bodies that mayBeFiltered are decoded again.
func contentFiltered(body []byte) bool {
	if !bytes.Contains(body, []byte(`"filtered"`)) || !mayBeFiltered(body) {
		return false
	}
	var v any
	if json.Unmarshal(body, &v) != nil {
		return true // cannot tell: do not cache
	}
	return anyFiltered(v, 0)
}

// mayBeFiltered reads valid JSON b byte by byte and reports whether
// anyFiltered could find something: a "filtered" key followed by true, a key
// with escapes (which could spell "filtered"), or containers nested deeper
// than anyFiltered's depth guard.
func mayBeFiltered(b []byte) bool {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{', '[':
			if depth++; depth > 32 {
				return true
			}
		case '}', ']':
			depth--
		case '"':
			start, escaped := i+1, false
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					escaped = true
					i++
				}
			}
			if i >= len(b) {
				return true // not JSON after all: let the decoder judge
			}
			if !escaped && string(b[start:i]) != "filtered" {
				continue
			}
			j := skipSpace(b, i+1)
			if j < len(b) && b[j] == ':' && (escaped || bytes.HasPrefix(b[skipSpace(b, j+1):], []byte("true"))) {
				return true
			}
		}
	}
	return false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func anyFiltered(v any, depth int) bool {
	if depth > 32 {
		return true
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if b, ok := e.(bool); ok && b && k == "filtered" {
				return true
			}
			if anyFiltered(e, depth+1) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if anyFiltered(e, depth+1) {
				return true
			}
		}
	}
	return false
}

// reply is a whole (non-streamed) backend answer, buffered until settled.
// Its headers are already in the client's ResponseWriter, not yet written.
type reply struct {
	status   int
	body     []byte
	id       string // the answer's id (chat completion or response)
	ok       bool   // a 200 its wire format could read
	u        *usage // nil when the answer carries none
	storable bool
	// filterCheck: storable still waits for the content-filter check
	// (contentFiltered, a search of the whole body), made only if the
	// cache asks (cacheable), not on every answer.
	filterCheck bool
	text        string
}

// replyReader is a wire format that reads a whole answer by itself, in one
// pass (the Responses API, whose answers are large).
type replyReader interface {
	readReply(status int, body []byte) *reply
}

func newReply(call *Call, status int, body []byte) *reply {
	if rr, ok := wireOf(call).(replyReader); ok {
		return rr.readReply(status, body)
	}
	r := &reply{status: status, body: body}
	_, chat := wireOf(call).(chatWire)
	if status == http.StatusOK && chat {
		// The common answer: validated and read in one pass, id included.
		if a, ok := scanChat(body); ok {
			r.ok = true
			r.id, r.u, r.storable, r.text = a.id, a.usage, a.cacheable(body), a.text
			return r
		}
	}
	if status == http.StatusOK && openai.Valid(body) {
		r.ok = true
		if chat {
			r.id, r.u, r.storable, r.text = readChat(body)
			return r
		}
		r.u, r.storable, r.text = wireOf(call).read(body)
		var head struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(body, &head)
		r.id = head.ID
	}
	return r
}

// replyUsage is what a whole reply consumed: its own usage; for a success
// without usage, the prompt estimate plus the counted answer; for a success
// that cannot be read or reports absurd usage, the whole estimate; nothing
// for an error (backends do not charge for refused requests).
func (g *Gateway) replyUsage(x *exchange) *usage {
	r := x.reply
	if r.status != http.StatusOK {
		return nil
	}
	if !r.ok {
		return x.estimated(g) // a 200 that cannot be read
	}
	if r.u != nil {
		if !r.u.plausible() {
			return x.estimated(g)
		}
		return r.u
	}
	if r.text == "" && bytes.Contains(r.body, []byte(`"usage"`)) {
		return x.estimated(g) // usage its wire format could not decode (overflowing numbers)
	}
	return &usage{Prompt: x.promptEstimate(g), Completion: int64(g.counter.Count(x.call.Route, r.text))}
}

// estimated is the charge when a backend's answer says nothing usable about
// its cost: the admission's estimate, prompt plus completion allowance.
func (x *exchange) estimated(g *Gateway) *usage {
	prompt, total := x.estimate(g)
	return &usage{Prompt: prompt, Completion: max(total-prompt, 0)}
}

// cacheable reports whether the reply is a success the cache may store.
func (r *reply) cacheable() bool {
	if r.filterCheck {
		r.filterCheck = false
		r.storable = r.storable && !contentFiltered(r.body)
	}
	return r.ok && r.storable
}

func (r *reply) writeTo(w http.ResponseWriter) {
	w.Header().Set("Content-Length", strconv.Itoa(len(r.body)))
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body)
}

// text joins the answer's message contents, for counting when usage is absent.
func (c *completion) text() string {
	var sb strings.Builder
	for _, ch := range c.Choices {
		if ch.Message.Content != nil {
			sb.WriteString(*ch.Message.Content)
		}
	}
	return sb.String()
}

package node

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/llmgate/llmgate/quota"
)

// exchange carries one call through the pipeline's stages.
type exchange struct {
	call  *Call
	adm   admission
	cache cachePlan
	// Exactly one of reply and stream is set once a backend answered.
	reply  *reply
	stream *streamTap
}

// usage is a reply's token usage.
type usage struct {
	Prompt     int64 `json:"prompt_tokens"`
	Completion int64 `json:"completion_tokens"`
	Total      int64 `json:"total_tokens"`
}

// total is the charge: the larger of total_tokens and the parts' sum, within
// what the limiter counts (a backend's absurd usage must not wrap counters).
func (u *usage) total() int64 {
	return min(max(u.Total, u.Prompt+u.Completion, 0), quota.MaxTokens)
}

// completion is the part of a chat.completion (or embeddings list) body the
// settle and store stages read.
type completion struct {
	Usage   *usage             `json:"usage"`
	Choices []completionChoice `json:"choices"`
}

type completionChoice struct {
	FinishReason *string `json:"finish_reason"`
	Message      struct {
		Content *string `json:"content"`
	} `json:"message"`
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
// chunks) mark anything as filtered. Only bodies that mention "filtered" are
// decoded.
func contentFiltered(body []byte) bool {
	if !bytes.Contains(body, []byte(`"filtered"`)) {
		return false
	}
	var v any
	if json.Unmarshal(body, &v) != nil {
		return true // cannot tell: do not cache
	}
	return anyFiltered(v, 0)
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
	status     int
	body       []byte
	completion *completion // nil unless a 200 with a JSON body
}

func newReply(status int, body []byte) *reply {
	r := &reply{status: status, body: body}
	if status == http.StatusOK {
		var c completion
		if json.Unmarshal(body, &c) == nil {
			r.completion = &c
		}
	}
	return r
}

// replyUsage is what a whole reply consumed: its own usage; for a success
// without usage, the prompt estimate plus the counted answer; nothing for an
// error (backends do not charge for refused requests).
func (g *Gateway) replyUsage(x *exchange) *usage {
	r := x.reply
	if r.status != http.StatusOK || r.completion == nil {
		return nil
	}
	if u := r.completion.Usage; u != nil {
		return u
	}
	return &usage{Prompt: x.adm.prompt, Completion: int64(g.counter.Count(x.call.Route, r.completion.text()))}
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

package node

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/llmgate/llmgate/internal/openai"
)

// maxCapture bounds the streamed text a tap keeps (for counting and caching).
const maxCapture = 8 << 20

// streamTap watches a relayed chat stream: it reads each chunk's usage,
// hides the usage chunk from clients that did not ask for it, and collects
// the answer so it can be counted (when usage is missing) and cached.
type streamTap struct {
	clientUsage bool // the client asked for stream_options.include_usage
	capture     bool // assemble a chat.completion for the cache

	u         *usage
	id, model string
	fp        string
	created   int64
	choices   []tapChoice
	text      int // captured bytes
	toolCalls bool
	overflow  bool
}

// tapChoice is one choice's part of the stream. Its content is a byte
// slice, not a strings.Builder: choices grows by append, which copies it.
type tapChoice struct {
	content []byte
	finish  *string
}

type chunk struct {
	ID                string `json:"id"`
	Created           int64  `json:"created"`
	Model             string `json:"model"`
	SystemFingerprint string `json:"system_fingerprint"`
	Choices           []struct {
		Index int `json:"index"`
		Delta struct {
			Content      *string         `json:"content"`
			ToolCalls    json.RawMessage `json:"tool_calls"`
			FunctionCall json.RawMessage `json:"function_call"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
}

func newStreamTap(call *Call, capture bool) *streamTap {
	t := &streamTap{capture: capture && call.Chat != nil}
	if call.Chat != nil && call.Chat.StreamOptions != nil {
		t.clientUsage = call.Chat.StreamOptions.IncludeUsage
	}
	return t
}

// see reads one event's data and reports whether to relay it.
func (t *streamTap) see(data []byte) bool {
	var c chunk
	if json.Unmarshal(data, &c) != nil {
		t.capture = false // not a chunk we understand: relay it, never cache
		return true
	}
	if t.capture && contentFiltered(data) {
		t.capture = false
	}
	if c.Usage != nil {
		t.u = c.Usage
		if !t.clientUsage && len(c.Choices) == 0 {
			return false
		}
	}
	if t.id == "" {
		t.id, t.model, t.fp, t.created = c.ID, c.Model, c.SystemFingerprint, c.Created
	}
	for _, ch := range c.Choices {
		if ch.Index < 0 || ch.Index > 128 {
			t.capture = false
			continue
		}
		for len(t.choices) <= ch.Index {
			t.choices = append(t.choices, tapChoice{})
		}
		tc := &t.choices[ch.Index]
		if d := ch.Delta; d.Content != nil && !t.overflow {
			if t.text += len(*d.Content); t.text > maxCapture {
				t.overflow, t.capture = true, false
			} else {
				tc.content = append(tc.content, *d.Content...)
			}
		}
		if len(ch.Delta.ToolCalls) > 0 && !bytes.Equal(ch.Delta.ToolCalls, []byte("null")) ||
			len(ch.Delta.FunctionCall) > 0 && !bytes.Equal(ch.Delta.FunctionCall, []byte("null")) {
			t.toolCalls = true
		}
		if ch.FinishReason != nil {
			tc.finish = ch.FinishReason
		}
	}
	return true
}

// usage is what the stream consumed: the backend's usage chunk, else the
// prompt estimate plus the streamed text counted (also for aborted streams).
func (t *streamTap) usage(g *Gateway, x *exchange) *usage {
	if t.u != nil {
		if !t.u.plausible() {
			return x.estimated(g)
		}
		return t.u
	}
	var sb strings.Builder
	for i := range t.choices {
		sb.Write(t.choices[i].content)
	}
	return &usage{Prompt: x.promptEstimate(g), Completion: int64(g.counter.Count(x.call.Route, sb.String()))}
}

// completion assembles the streamed answer as one chat.completion body, or
// returns nil when it must not be cached (tool calls, unfinished or filtered
// choices, chunks it could not read).
func (t *streamTap) completion() []byte {
	if !t.capture || t.toolCalls || len(t.choices) == 0 {
		return nil
	}
	out := chatCompletion{ID: t.id, Object: "chat.completion", Created: t.created, Model: t.model, SystemFingerprint: t.fp}
	if t.u != nil {
		out.Usage, _ = json.Marshal(t.u)
	}
	for i := range t.choices {
		tc := &t.choices[i]
		if tc.finish == nil {
			return nil
		}
		out.Choices = append(out.Choices, chatChoice{Index: i, Message: chatMessage{Role: "assistant", Content: string(tc.content)}, FinishReason: *tc.finish})
	}
	body, err := json.Marshal(out)
	if err != nil {
		return nil
	}
	// Checked by the rule a whole answer is stored by; its choices are built
	// directly rather than decoded.
	c := &completion{Choices: make([]completionChoice, len(out.Choices))}
	for i := range out.Choices {
		c.Choices[i].FinishReason = &out.Choices[i].FinishReason
	}
	if !c.cacheable(body) {
		return nil
	}
	return body
}

// withStreamUsage returns a chat body whose stream_options ask for the usage
// chunk, leaving the client's other bytes as they were when it can.
func withStreamUsage(body []byte) []byte {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return body
	}
	const opt = `"stream_options":{"include_usage":true}`
	if _, had := obj["stream_options"]; !had {
		i := bytes.IndexByte(body, '{')
		out := make([]byte, 0, len(body)+len(opt)+1)
		out = append(out, body[:i+1]...)
		out = append(out, opt...)
		if len(obj) > 0 {
			out = append(out, ',')
		}
		return append(out, body[i+1:]...)
	}
	var so map[string]json.RawMessage
	if json.Unmarshal(obj["stream_options"], &so) != nil || so == nil {
		so = map[string]json.RawMessage{}
	}
	so["include_usage"] = json.RawMessage("true")
	obj["stream_options"], _ = json.Marshal(so)
	out, err := json.Marshal(obj)
	if err != nil {
		return body
	}
	return out
}

func (t *streamTap) responseID() string { return t.id }

// ended: a chat stream ends with [DONE], which the relay sees itself.
func (t *streamTap) ended() bool { return false }

// broken: a chat stream's error is a data event carrying an error body.
func (t *streamTap) broken(e *openai.Error) []byte { return openai.WriteDataEvent(nil, e.Body()) }

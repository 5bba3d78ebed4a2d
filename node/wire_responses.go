package node

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/internal/tokens"
)

// responsesWire is the Responses API's POST /responses.
type responsesWire struct{}

func (responsesWire) estimate(g *Gateway, call *Call) (prompt, total int64) {
	r := call.Responses
	if r == nil {
		return 0, 0
	}
	if msgs, ok := r.Messages(); ok {
		prompt = int64(g.counter.CountChat(call.Route, msgs))
	} else {
		// Images, files: counted as the text of the raw input, a floor.
		prompt = int64(g.counter.Count(call.Route, string(r.Input)))
	}
	if len(r.Tools) > 0 {
		prompt += int64(g.counter.Count(call.Route, string(r.Tools)))
	}
	return prompt, prompt + responsesCompletionPart(g, r)
}

// responsesCompletionPart is the completion allowance a Responses request
// reserves: its max_output_tokens, or the default.
func responsesCompletionPart(g *Gateway, r *openai.ResponsesRequest) int64 {
	allowance := g.limits.DefaultCompletionTokens
	if r.MaxOutputTokens != nil {
		allowance = *r.MaxOutputTokens
	}
	return min(allowance, maxAllowance)
}

// bound is an upper bound of estimate's total from byte lengths alone, as
// chat's (tokens.ChatBound for the messages, tokens.TextBound for the raw
// input and the tools), so that a create is admitted without counting
// first when the limiter allows it (see reserveBound).
func (responsesWire) bound(g *Gateway, call *Call) (int64, bool) {
	r := call.Responses
	if r == nil {
		return 0, false
	}
	var n int64
	if msgs, ok := r.Messages(); ok {
		n = int64(tokens.ChatBound(msgs))
	} else {
		n = int64(tokens.TextBound(string(r.Input)))
	}
	if len(r.Tools) > 0 {
		n += int64(tokens.TextBound(string(r.Tools)))
	}
	return n + responsesCompletionPart(g, r), true
}

// dialog: stateful requests (previous_response_id, conversation,
// background) build on what the backend holds, which the request does not
// show: never cached.
func (responsesWire) dialog(call *Call) ([]openai.Message, *float64, bool) {
	r := call.Responses
	if r == nil || r.Stateful() {
		return nil, nil, false
	}
	msgs, ok := r.Messages()
	if !ok {
		return nil, nil, false
	}
	return msgs, r.Temperature, true
}

// upstreamBody: a Responses stream always ends with its usage.
func (responsesWire) upstreamBody(_ *Call, body []byte, _ bool) []byte { return body }

// responseObject is the part of a response object the gateway reads.
type responseObject struct {
	ID                string          `json:"id"`
	Status            string          `json:"status"`
	IncompleteDetails *respIncomplete `json:"incomplete_details"`
	Output            []respOutput    `json:"output"`
	Usage             *respUsage      `json:"usage"`
}

type respIncomplete struct {
	Reason string `json:"reason"`
}

type respOutput struct {
	Type    string     `json:"type"`
	Content []respPart `json:"content"`
}

type respPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type respUsage struct {
	Input  int64 `json:"input_tokens"`
	Output int64 `json:"output_tokens"`
	Total  int64 `json:"total_tokens"`
}

func (o *responseObject) usage() *usage {
	if o.Usage == nil {
		return nil
	}
	return &usage{Prompt: o.Usage.Input, Completion: o.Usage.Output, Total: o.Usage.Total}
}

// storable: finished (or cut by max_output_tokens, as chat's "length"), and
// only text messages, which replay both as JSON and as a stream.
func (o *responseObject) storable() bool {
	switch {
	case o.Status == "completed":
	case o.Status == "incomplete" && o.IncompleteDetails != nil && o.IncompleteDetails.Reason == "max_output_tokens":
	default:
		return false
	}
	if len(o.Output) == 0 {
		return false
	}
	for _, it := range o.Output {
		if it.Type != "message" {
			return false
		}
		for _, c := range it.Content {
			if c.Type != "output_text" {
				return false
			}
		}
	}
	return true
}

func (o *responseObject) text() string {
	var sb strings.Builder
	for _, it := range o.Output {
		for _, c := range it.Content {
			sb.WriteString(c.Text)
		}
	}
	return sb.String()
}

func (responsesWire) read(body []byte) (*usage, bool, string) {
	var o responseObject
	if json.Unmarshal(body, &o) != nil {
		return nil, false, ""
	}
	return o.usage(), o.storable() && !contentFiltered(body), o.text()
}

// readReply reads a whole answer with one decode: a 200 that does not
// decode as a response object is unreadable (charged the estimate, not
// stored); the text is kept only to be counted when usage is missing.
func (responsesWire) readReply(status int, body []byte) *reply {
	r := &reply{status: status, body: body}
	if status != http.StatusOK {
		return r
	}
	a, ok := readResponse(body)
	if !ok {
		return r
	}
	r.ok, r.id, r.u, r.text = true, a.id, a.u, a.text
	r.storable, r.filterCheck = a.storable, a.storable
	return r
}

func (responsesWire) tap(call *Call, capture bool) streamWatcher {
	return &responsesTap{capture: capture}
}

func (responsesWire) replayable(*Call, []byte) bool { return true }

// responsesTap watches a Responses API stream: typed events ending with
// response.completed, response.incomplete or response.failed, whose
// response object carries the usage and the whole answer.
type responsesTap struct {
	capture bool
	id      string
	final   []byte // the terminal event's response object
	obj     *responseObject
	text    []byte // output_text deltas, counted when the stream breaks off
	done    bool
	seq     int64 // the next event's sequence_number
}

func (t *responsesTap) see(data []byte) bool {
	var ev struct {
		Type     string          `json:"type"`
		Seq      *int64          `json:"sequence_number"`
		Delta    string          `json:"delta"`
		Response json.RawMessage `json:"response"`
	}
	if json.Unmarshal(data, &ev) != nil {
		t.capture = false
		return true
	}
	if ev.Seq != nil {
		t.seq = *ev.Seq + 1
	}
	switch ev.Type {
	case "response.created":
		var o responseObject
		if json.Unmarshal(ev.Response, &o) == nil {
			t.id = o.ID
		}
	case "response.output_text.delta":
		if len(t.text) < maxCapture {
			t.text = append(t.text, ev.Delta...)
		}
	case "response.completed", "response.incomplete", "response.failed":
		t.done = true
		var o responseObject
		if json.Unmarshal(ev.Response, &o) == nil {
			t.obj, t.final = &o, bytes.Clone(ev.Response)
			if t.id == "" {
				t.id = o.ID
			}
		}
	}
	return true
}

func (t *responsesTap) ended() bool { return t.done }

func (t *responsesTap) usage(g *Gateway, x *exchange) *usage {
	if t.obj != nil {
		if u := t.obj.usage(); u != nil {
			return u
		}
	}
	return &usage{Prompt: x.promptEstimate(g), Completion: int64(g.counter.Count(x.call.Route, string(t.text)))}
}

func (t *responsesTap) completion() []byte {
	if !t.capture || t.obj == nil || !t.obj.storable() || contentFiltered(t.final) {
		return nil
	}
	return t.final
}

// responseID is the id of the response the stream created ("" if none).
func (t *responsesTap) responseID() string { return t.id }

// broken is the Responses API's typed error event (event: error, type
// "error", code, message, param, sequence_number), numbered after the last
// event relayed, as the API ends a stream that fails.
func (t *responsesTap) broken(e *openai.Error) []byte {
	var param *string
	if e.Param != "" {
		param = &e.Param
	}
	b, _ := json.Marshal(struct {
		Type    string  `json:"type"`
		Code    string  `json:"code"`
		Message string  `json:"message"`
		Param   *string `json:"param"`
		Seq     int64   `json:"sequence_number"`
	}{"error", e.Code, e.Message, param, t.seq})
	return openai.WriteDataEvent([]byte("event: error\n"), b)
}

// replay renders a stored response object as the Responses API's typed
// events: created, in_progress, per message its item and text, then the
// terminal event with the whole object.
func (responsesWire) replay(_ *Call, stored []byte) []byte {
	var obj map[string]json.RawMessage
	var o responseObject
	if json.Unmarshal(stored, &obj) != nil || json.Unmarshal(stored, &o) != nil {
		return nil
	}
	var items []map[string]json.RawMessage
	_ = json.Unmarshal(obj["output"], &items)
	var out []byte
	seq := 0
	emit := func(typ string, fields map[string]any) {
		fields["type"] = typ
		fields["sequence_number"] = seq
		seq++
		b, _ := json.Marshal(fields)
		out = append(out, "event: "+typ+"\n"...)
		out = openai.WriteDataEvent(out, b)
	}
	start := map[string]json.RawMessage{}
	for k, v := range obj {
		start[k] = v
	}
	start["status"], start["output"], start["usage"], start["incomplete_details"] = json.RawMessage(`"in_progress"`), json.RawMessage(`[]`), json.RawMessage(`null`), json.RawMessage(`null`)
	emit("response.created", map[string]any{"response": start})
	emit("response.in_progress", map[string]any{"response": start})
	for i, it := range items {
		var id string
		_ = json.Unmarshal(it["id"], &id)
		added := map[string]json.RawMessage{}
		for k, v := range it {
			added[k] = v
		}
		added["status"], added["content"] = json.RawMessage(`"in_progress"`), json.RawMessage(`[]`)
		emit("response.output_item.added", map[string]any{"output_index": i, "item": added})
		if i < len(o.Output) {
			for ci, c := range o.Output[i].Content {
				emit("response.content_part.added", map[string]any{"item_id": id, "output_index": i, "content_index": ci,
					"part": map[string]any{"type": "output_text", "text": "", "annotations": []any{}}})
				for _, piece := range pieces(c.Text) {
					emit("response.output_text.delta", map[string]any{"item_id": id, "output_index": i, "content_index": ci, "delta": piece, "logprobs": []any{}})
				}
				emit("response.output_text.done", map[string]any{"item_id": id, "output_index": i, "content_index": ci, "text": c.Text, "logprobs": []any{}})
				emit("response.content_part.done", map[string]any{"item_id": id, "output_index": i, "content_index": ci,
					"part": map[string]any{"type": "output_text", "text": c.Text, "annotations": []any{}}})
			}
		}
		emit("response.output_item.done", map[string]any{"output_index": i, "item": it})
	}
	terminal := "response.completed"
	if o.Status == "incomplete" {
		terminal = "response.incomplete"
	}
	emit(terminal, map[string]any{"response": json.RawMessage(stored)})
	return out
}

func (responsesWire) follows(call *Call) string {
	if call.Responses == nil {
		return ""
	}
	return call.Responses.PreviousResponseID
}

func (responsesWire) created(x *exchange) string {
	if x.reply != nil && x.reply.ok {
		return x.reply.id
	}
	if x.stream != nil {
		return x.stream.responseID()
	}
	return ""
}

// hit: each replay of a stored response is a response of its own, with a
// fresh id owned by the caller (see reissue).
func (responsesWire) hit(ctx context.Context, g *Gateway, call *Call, stored []byte) ([]byte, string) {
	return g.reissue(ctx, call, stored)
}

// withPreviousResponse returns body with previous_response_id id replaced
// by held, the response the backend knows.
func withPreviousResponse(body []byte, id, held string) []byte {
	if bytes.Count(body, quoted(id)) == 1 {
		return bytes.Replace(body, quoted(id), quoted(held), 1)
	}
	// Escaped, or the id also in the input: rewrite the field alone.
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return body
	}
	obj["previous_response_id"] = quoted(held)
	out, err := json.Marshal(obj)
	if err != nil {
		return body
	}
	return out
}

// responseAnswer is what the settle and store stages need of a whole
// response object: its id, usage, whether it may be stored (before the
// content filter check) and, only when it has no usage, its text.
type responseAnswer struct {
	id       string
	u        *usage
	storable bool
	text     string
}

func (o *responseObject) answer() responseAnswer {
	a := responseAnswer{id: o.ID, u: o.usage(), storable: o.storable()}
	if a.u == nil {
		a.text = o.text()
	}
	return a
}

// readResponse reads a whole response object body as decoding it into a
// responseObject does: the common answer (a top-level object, plain
// strings, integer counts, each field once) by scanResponse, which also
// validates it, in one pass; any other by encoding/json
// (FuzzReadResponseMatchesDecoding checks they agree). ok is false for a
// body that does not decode.
func readResponse(body []byte) (responseAnswer, bool) {
	if a, ok := scanResponse(body); ok {
		return a, true
	}
	var o responseObject
	if json.Unmarshal(body, &o) != nil {
		return responseAnswer{}, false
	}
	return o.answer(), true
}

// textSpan is a string's contents in the body.
type textSpan struct {
	start, end int
	escaped    bool
}

// scanResponse validates body and reads what responseAnswer holds, with
// answerScanner, keeping no string but the id (and the text when there is
// no usage); ok is false when encoding/json must decide.
func scanResponse(body []byte) (a responseAnswer, ok bool) {
	s := answerScanner{b: body}
	if s.peek() != '{' {
		return a, false
	}
	var (
		status, reason []byte // as decoded (nil: absent or null)
		items          int
		onlyText       = true // every item a message of output_text parts
		spanBuf        [4]textSpan
		spans          = spanBuf[:0] // every part's text, in order
	)
	var top seen
	ok = s.object(func(key []byte) bool {
		switch {
		case keyIs(key, "id"):
			return top.first(1) && s.str(&a.id)
		case keyIs(key, "status"):
			return top.first(2) && s.strBytes(&status)
		case keyIs(key, "incomplete_details"):
			if !top.first(4) {
				return false
			}
			if present, ok := s.nullOr('{'); !present {
				return ok
			}
			var f seen
			return s.object(func(key []byte) bool {
				if keyIs(key, "reason") {
					return f.first(1) && s.strBytes(&reason)
				}
				return s.skip()
			})
		case keyIs(key, "output"):
			if !top.first(8) {
				return false
			}
			return s.respArray(func() bool {
				items++
				var typ []byte
				var f seen
				ok := s.object(func(key []byte) bool {
					switch {
					case keyIs(key, "type"):
						return f.first(1) && s.strBytes(&typ)
					case keyIs(key, "content"):
						if !f.first(2) {
							return false
						}
						return s.respArray(func() bool {
							var ptype []byte
							var g seen
							ok := s.object(func(key []byte) bool {
								switch {
								case keyIs(key, "type"):
									return g.first(1) && s.strBytes(&ptype)
								case keyIs(key, "text"):
									if !g.first(2) {
										return false
									}
									if s.isNull() {
										return true
									}
									start := s.i + 1
									_, escaped, ok := s.rawString()
									spans = append(spans, textSpan{start, s.i - 1, escaped})
									return ok
								}
								return s.skip()
							})
							if string(ptype) != "output_text" {
								onlyText = false
							}
							return ok
						}, func() { onlyText = false })
					}
					return s.skip()
				})
				if string(typ) != "message" {
					onlyText = false
				}
				return ok
			}, func() { items++; onlyText = false })
		case keyIs(key, "usage"):
			if !top.first(16) {
				return false
			}
			if present, ok := s.nullOr('{'); !present {
				return ok
			}
			a.u = &usage{}
			var f seen
			return s.object(func(key []byte) bool {
				switch {
				case keyIs(key, "input_tokens"):
					return f.first(1) && s.int(&a.u.Prompt)
				case keyIs(key, "output_tokens"):
					return f.first(2) && s.int(&a.u.Completion)
				case keyIs(key, "total_tokens"):
					return f.first(4) && s.int(&a.u.Total)
				}
				return s.skip()
			})
		}
		return s.skip()
	})
	if !ok || !s.end() {
		return responseAnswer{}, false
	}
	finished := string(status) == "completed" || string(status) == "incomplete" && string(reason) == "max_output_tokens"
	a.storable = finished && items > 0 && onlyText
	if a.u == nil {
		var sb strings.Builder
		for _, sp := range spans {
			var t string
			if !s.text(sp, &t) {
				return responseAnswer{}, false
			}
			sb.WriteString(t)
		}
		a.text = sb.String()
	}
	return a, true
}

// strBytes reads the string (or null: nil) at s.i as encoding/json decodes
// it, without a copy when it needs no decoding.
func (s *answerScanner) strBytes(into *[]byte) bool {
	if s.isNull() {
		return true
	}
	raw, escaped, ok := s.rawString()
	switch {
	case !ok:
		return false
	case !escaped && utf8.Valid(raw):
		*into = raw
		return true
	}
	var v string
	if !decodeString(s.b[s.i-len(raw)-2:s.i], &v) {
		return false
	}
	*into = []byte(v)
	return true
}

// text decodes the string contents at sp, which the scanner validated.
func (s *answerScanner) text(sp textSpan, into *string) bool {
	raw := s.b[sp.start:sp.end]
	if !sp.escaped && utf8.Valid(raw) {
		*into = string(raw)
		return true
	}
	return decodeString(s.b[sp.start-1:sp.end+1], into)
}

// respArray reads the array (or null) at s.i: elem reads each object
// element, null stands for an element that is null.
func (s *answerScanner) respArray(elem func() bool, null func()) bool {
	if present, ok := s.nullOr('['); !present {
		return ok
	}
	s.open()
	if s.peek() == ']' {
		s.close()
		return true
	}
	for {
		switch s.peek() {
		case 'n':
			if !s.isNull() {
				return false
			}
			null()
		case '{':
			if !elem() {
				return false
			}
		default:
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.close()
			return true
		default:
			return false
		}
	}
}

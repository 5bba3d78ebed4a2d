package mock

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/llmgate/llmgate/internal/openai"
)

// maxStored bounds the responses the mock keeps for GET, continuation and
// input_items; the oldest go first.
const maxStored = 10000

// Wire shapes of the Responses API.
type (
	respObject struct {
		ID                 string            `json:"id"`
		Object             string            `json:"object"`
		CreatedAt          int64             `json:"created_at"`
		Status             string            `json:"status"`
		Background         bool              `json:"background"`
		Error              *respError        `json:"error"`
		IncompleteDetails  *respIncomplete   `json:"incomplete_details"`
		Instructions       *string           `json:"instructions"`
		MaxOutputTokens    *int64            `json:"max_output_tokens"`
		Model              string            `json:"model"`
		Output             []respItem        `json:"output"`
		ParallelToolCalls  bool              `json:"parallel_tool_calls"`
		PreviousResponseID *string           `json:"previous_response_id"`
		Store              bool              `json:"store"`
		Temperature        float64           `json:"temperature"`
		Text               json.RawMessage   `json:"text"`
		ToolChoice         json.RawMessage   `json:"tool_choice"`
		Tools              json.RawMessage   `json:"tools"`
		TopP               float64           `json:"top_p"`
		Truncation         string            `json:"truncation"`
		Usage              *respUsage        `json:"usage"`
		Metadata           map[string]string `json:"metadata"`
	}
	respError struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	respIncomplete struct {
		Reason string `json:"reason"`
	}
	respItem struct {
		ID        string        `json:"id"`
		Type      string        `json:"type"`
		Status    string        `json:"status"`
		Role      string        `json:"role,omitempty"`
		Content   []respContent `json:"content,omitempty"`
		CallID    string        `json:"call_id,omitempty"`
		Name      string        `json:"name,omitempty"`
		Arguments *string       `json:"arguments,omitempty"`
	}
	respContent struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		Annotations []any  `json:"annotations"`
	}
	respUsage struct {
		InputTokens         int            `json:"input_tokens"`
		InputTokensDetails  map[string]int `json:"input_tokens_details"`
		OutputTokens        int            `json:"output_tokens"`
		OutputTokensDetails map[string]int `json:"output_tokens_details"`
		TotalTokens         int            `json:"total_tokens"`
	}
)

// storedResponse is one response the mock keeps: the object, the input
// items that produced it (for input_items) and the dialog so far (for
// previous_response_id).
type storedResponse struct {
	obj     respObject
	input   []json.RawMessage
	dialog  []openai.Message
	readyAt time.Time // background runs complete then
}

// responseStore keeps responses by id, oldest evicted first. It keeps them
// encoded: ten thousand kept responses as trees of structs, strings and
// slices made every garbage collection of the mock walk some 50 MB of
// pointers (mark phases of 20-40 ms on two cores, against 2-3 ms for a mock
// answering the same load as chat completions), which slowed whatever ran
// next to it, the Responses benchmark's node included. Encoded, each is a
// byte slice the collector does not look into.
type responseStore struct {
	mu    sync.Mutex
	byID  map[string]packedResponse
	order []string
}

// packedResponse is a storedResponse as the store keeps it.
type packedResponse struct {
	blob    []byte // storedJSON
	readyAt time.Time
}

type storedJSON struct {
	Obj    respObject        `json:"obj"`
	Input  []json.RawMessage `json:"input"`
	Dialog []openai.Message  `json:"dialog"`
}

func pack(r *storedResponse) (packedResponse, error) {
	b, err := json.Marshal(storedJSON{Obj: r.obj, Input: r.input, Dialog: r.dialog})
	return packedResponse{blob: b, readyAt: r.readyAt}, err
}

func (p packedResponse) unpack() storedResponse {
	var s storedJSON
	_ = json.Unmarshal(p.blob, &s) // written by pack
	return storedResponse{obj: s.Obj, input: s.Input, dialog: s.Dialog, readyAt: p.readyAt}
}

func newResponseStore() *responseStore {
	return &responseStore{byID: map[string]packedResponse{}}
}

func (st *responseStore) put(r *storedResponse) {
	p, err := pack(r)
	if err != nil {
		return // not kept: a follow-up on it answers 404
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.byID[r.obj.ID] = p
	st.order = append(st.order, r.obj.ID)
	for len(st.order) > maxStored {
		delete(st.byID, st.order[0])
		st.order = st.order[1:]
	}
}

// get returns the stored response, its background run settled at now.
func (st *responseStore) get(id string, now time.Time) (storedResponse, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	p, ok := st.byID[id]
	if !ok {
		return storedResponse{}, false
	}
	r := p.unpack()
	if r.obj.Status == "in_progress" && !now.Before(r.readyAt) {
		r.obj.Status = finalStatus(r.obj)
		st.keep(&r)
	}
	return r, true
}

// keep stores r again after a change, if it is still kept.
func (st *responseStore) keep(r *storedResponse) {
	if _, ok := st.byID[r.obj.ID]; !ok {
		return
	}
	if p, err := pack(r); err == nil {
		st.byID[r.obj.ID] = p
	}
}

func (st *responseStore) delete(id string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.byID[id]; !ok {
		return false
	}
	delete(st.byID, id)
	return true
}

// cancel cancels a background run still in progress.
func (st *responseStore) cancel(id string, now time.Time) (respObject, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	p, ok := st.byID[id]
	if !ok {
		return respObject{}, errNotFound
	}
	r := p.unpack()
	if !r.obj.Background {
		return respObject{}, errors.New("Only responses created with background=true can be cancelled.")
	}
	if r.obj.Status == "in_progress" {
		if now.Before(r.readyAt) {
			r.obj.Status, r.obj.Output, r.obj.Usage = "cancelled", []respItem{}, nil
		} else {
			r.obj.Status = finalStatus(r.obj)
		}
		st.keep(&r)
	}
	return r.obj, nil
}

var errNotFound = errors.New("not found")

func finalStatus(o respObject) string {
	if o.IncompleteDetails != nil {
		return "incomplete"
	}
	return "completed"
}

// responsesExtra are the request fields only the mock reads.
type responsesExtra struct {
	ToolChoice json.RawMessage `json:"tool_choice"`
	Text       *struct {
		Format json.RawMessage `json:"format"`
	} `json:"text"`
	Metadata map[string]string `json:"metadata"`
}

func (s *Server) handleResponsesCreate(w http.ResponseWriter, r *http.Request) {
	c, ok := decodeCall(w, r, openai.ParseResponses, func(q *openai.ResponsesRequest) string { return q.Model })
	if !ok {
		return
	}
	req, model := c.req, c.model
	var extra responsesExtra
	_ = json.Unmarshal(c.body, &extra)

	msgs, ok := req.Messages()
	if !ok {
		openai.BadRequest("input", "The mock reads only text input items.").Write(w)
		return
	}
	var dialog []openai.Message
	if req.PreviousResponseID != "" {
		prev, found := s.responses.get(req.PreviousResponseID, s.now())
		if !found {
			(&openai.Error{Status: http.StatusNotFound, Type: "invalid_request_error", Param: "previous_response_id", Code: "previous_response_not_found",
				Message: fmt.Sprintf("Previous response with id '%s' not found.", req.PreviousResponseID)}).Write(w)
			return
		}
		dialog = append(dialog, prev.dialog...)
	}
	dialog = append(dialog, msgs...)

	length, incomplete := DefaultCompletionTokens, false
	if req.MaxOutputTokens != nil {
		if *req.MaxOutputTokens > MaxCompletionTokens {
			openai.BadRequest("max_output_tokens", fmt.Sprintf("max_output_tokens is too large: %d. This model supports at most %d output tokens.",
				*req.MaxOutputTokens, MaxCompletionTokens)).Write(w)
			return
		}
		length, incomplete = int(*req.MaxOutputTokens), true
	}
	input := s.counter.CountChat(model, dialog)
	if !s.admit(w, c.rt, "Responses_Create", model, int64(input+length)) {
		return
	}

	toks := generate(promptSeed(dialog), length, !incomplete)
	text := strings.Join(toks, "")
	output := length
	var item respItem
	last := ""
	if len(msgs) > 0 {
		last = msgs[len(msgs)-1].Role
	}
	var format json.RawMessage
	if extra.Text != nil {
		format = extra.Text.Format
	}
	if tc, ok := pickTool(req.Tools, extra.ToolChoice, last == "tool"); ok {
		args := tc.Arguments
		item = respItem{ID: "fc_" + rand.Text(), Type: "function_call", Status: "completed", CallID: tc.ID, Name: tc.Name, Arguments: &args}
		output, incomplete = s.counter.Count(model, tc.Name+tc.Arguments), false
		toks = nil
	} else {
		if content, ok := jsonFormat(format, text); ok {
			text, toks, incomplete = content, textPieces(content), false
			output = s.counter.Count(model, content)
		}
		item = respItem{ID: "msg_" + rand.Text(), Type: "message", Status: "completed", Role: "assistant",
			Content: []respContent{{Type: "output_text", Text: text, Annotations: []any{}}}}
	}

	obj := respObject{
		ID: "resp_" + rand.Text(), Object: "response", CreatedAt: s.now().Unix(), Status: "completed",
		Background: req.Background, Instructions: req.Instructions, MaxOutputTokens: req.MaxOutputTokens, Model: model,
		Output: []respItem{item}, ParallelToolCalls: true, Store: req.Store == nil || *req.Store,
		Temperature: 1, Text: json.RawMessage(`{"format":{"type":"text"}}`), ToolChoice: json.RawMessage(`"auto"`),
		Tools: json.RawMessage(`[]`), TopP: 1, Truncation: "disabled", Metadata: map[string]string{},
		Usage: &respUsage{InputTokens: input, OutputTokens: output, TotalTokens: input + output,
			InputTokensDetails: map[string]int{"cached_tokens": 0}, OutputTokensDetails: map[string]int{"reasoning_tokens": 0}},
	}
	if req.PreviousResponseID != "" {
		obj.PreviousResponseID = &req.PreviousResponseID
	}
	if req.Temperature != nil {
		obj.Temperature = *req.Temperature
	}
	if len(format) > 0 {
		obj.Text, _ = json.Marshal(map[string]json.RawMessage{"format": format})
	}
	if len(extra.ToolChoice) > 0 {
		obj.ToolChoice = extra.ToolChoice
	}
	if len(req.Tools) > 0 {
		obj.Tools = req.Tools
	}
	if extra.Metadata != nil {
		obj.Metadata = extra.Metadata
	}
	if incomplete {
		obj.Status, obj.IncompleteDetails = "incomplete", &respIncomplete{Reason: "max_output_tokens"}
	}
	// The dialog a follow-up continues: this input and this answer.
	answerText := text
	if item.Type == "function_call" {
		answerText = *item.Arguments
	}
	st := &storedResponse{obj: obj, input: inputItems(req), dialog: append(dialog, openai.Message{Role: "assistant", Content: jsonText(answerText)})}
	delay := time.Duration(s.latency.Load()) + s.tokenDelay(output-1)

	if req.Background {
		// Answered at once, in progress; GET shows it complete once its
		// tokens would have been generated.
		st.readyAt = s.now().Add(delay)
		st.obj.Status = "in_progress"
		if obj.Store {
			s.responses.put(st)
		}
		writeJSON(w, st.obj)
		return
	}
	if obj.Store {
		s.responses.put(st)
	}
	if req.Stream {
		s.streamResponse(w, r, obj, toks)
		return
	}
	if !sleep(r.Context(), delay) {
		return
	}
	writeJSON(w, obj)
}

func jsonText(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// inputItems lists a request's input as items with ids, as input_items shows them.
func inputItems(req *openai.ResponsesRequest) []json.RawMessage {
	var out []json.RawMessage
	for _, it := range req.Items() {
		var m map[string]json.RawMessage
		b, _ := json.Marshal(it)
		_ = json.Unmarshal(b, &m)
		for k, v := range m {
			if string(v) == "null" || string(v) == `""` {
				delete(m, k)
			}
		}
		if it.Type == "" {
			m["type"] = json.RawMessage(`"message"`)
		}
		if it.Content != nil && it.Content[0] == '"' {
			var text string
			_ = json.Unmarshal(it.Content, &text)
			m["content"], _ = json.Marshal([]map[string]string{{"type": "input_text", "text": text}})
		}
		m["id"] = jsonText("msg_" + rand.Text())
		b, _ = json.Marshal(m)
		out = append(out, b)
	}
	return out
}

// streamResponse writes obj as the Responses API's typed events:
// response.created, response.in_progress, the output item with its deltas,
// then response.completed (or response.incomplete).
func (s *Server) streamResponse(w http.ResponseWriter, r *http.Request, obj respObject, toks []string) {
	ctx := r.Context()
	if !sleep(ctx, time.Duration(s.latency.Load())) {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	seq := 0
	send := func(typ string, fields map[string]any) bool {
		s.cut(seq)
		fields["type"] = typ
		fields["sequence_number"] = seq
		seq++
		payload, err := json.Marshal(fields)
		if err != nil {
			return false
		}
		buf := append([]byte("event: "+typ+"\n"), openai.WriteDataEvent(nil, payload)...)
		if _, err := w.Write(buf); err != nil {
			return false
		}
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		return ctx.Err() == nil
	}
	start := obj
	start.Status, start.Output, start.Usage, start.IncompleteDetails = "in_progress", []respItem{}, nil, nil
	if !send("response.created", map[string]any{"response": start}) || !send("response.in_progress", map[string]any{"response": start}) {
		return
	}
	item := obj.Output[0]
	added := item
	added.Status = "in_progress"
	if item.Type == "function_call" {
		empty := ""
		added.Arguments = &empty
		if !send("response.output_item.added", map[string]any{"output_index": 0, "item": added}) ||
			!send("response.function_call_arguments.delta", map[string]any{"item_id": item.ID, "output_index": 0, "delta": *item.Arguments}) ||
			!send("response.function_call_arguments.done", map[string]any{"item_id": item.ID, "output_index": 0, "arguments": *item.Arguments}) {
			return
		}
	} else {
		added.Content = []respContent{}
		part := respContent{Type: "output_text", Text: "", Annotations: []any{}}
		if !send("response.output_item.added", map[string]any{"output_index": 0, "item": added}) ||
			!send("response.content_part.added", map[string]any{"item_id": item.ID, "output_index": 0, "content_index": 0, "part": part}) {
			return
		}
		begin := time.Now()
		for i, tok := range toks {
			if i > 0 && !sleep(ctx, time.Until(begin.Add(s.tokenDelay(i)))) {
				return
			}
			if !send("response.output_text.delta", map[string]any{"item_id": item.ID, "output_index": 0, "content_index": 0, "delta": tok, "logprobs": []any{}}) {
				return
			}
		}
		text := item.Content[0].Text
		part.Text = text
		if !send("response.output_text.done", map[string]any{"item_id": item.ID, "output_index": 0, "content_index": 0, "text": text, "logprobs": []any{}}) ||
			!send("response.content_part.done", map[string]any{"item_id": item.ID, "output_index": 0, "content_index": 0, "part": part}) {
			return
		}
	}
	if !send("response.output_item.done", map[string]any{"output_index": 0, "item": item}) {
		return
	}
	_ = send("response."+obj.Status, map[string]any{"response": obj})
}

func (s *Server) handleResponseGet(w http.ResponseWriter, r *http.Request) {
	if _, ok := routeOf(w, r); !ok {
		return
	}
	st, ok := s.responses.get(r.PathValue("id"), s.now())
	if !ok {
		responseNotFound(w, r.PathValue("id"))
		return
	}
	writeJSON(w, st.obj)
}

func (s *Server) handleResponseDelete(w http.ResponseWriter, r *http.Request) {
	if _, ok := routeOf(w, r); !ok {
		return
	}
	id := r.PathValue("id")
	if !s.responses.delete(id) {
		responseNotFound(w, id)
		return
	}
	writeJSON(w, map[string]any{"id": id, "object": "response.deleted", "deleted": true})
}

func (s *Server) handleResponseCancel(w http.ResponseWriter, r *http.Request) {
	if _, ok := routeOf(w, r); !ok {
		return
	}
	obj, err := s.responses.cancel(r.PathValue("id"), s.now())
	switch {
	case errors.Is(err, errNotFound):
		responseNotFound(w, r.PathValue("id"))
	case err != nil:
		openai.BadRequest("", err.Error()).Write(w)
	default:
		writeJSON(w, obj)
	}
}

func (s *Server) handleResponseInputItems(w http.ResponseWriter, r *http.Request) {
	if _, ok := routeOf(w, r); !ok {
		return
	}
	st, ok := s.responses.get(r.PathValue("id"), s.now())
	if !ok {
		responseNotFound(w, r.PathValue("id"))
		return
	}
	data := st.input
	if r.URL.Query().Get("order") != "asc" {
		// Newest first, the API's default order.
		data = make([]json.RawMessage, len(st.input))
		for i, it := range st.input {
			data[len(st.input)-1-i] = it
		}
	}
	if data == nil {
		data = []json.RawMessage{}
	}
	list := map[string]any{"object": "list", "data": data, "has_more": false, "first_id": nil, "last_id": nil}
	if len(data) > 0 {
		var first, last struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(data[0], &first)
		_ = json.Unmarshal(data[len(data)-1], &last)
		list["first_id"], list["last_id"] = first.ID, last.ID
	}
	writeJSON(w, list)
}

func responseNotFound(w http.ResponseWriter, id string) {
	(&openai.Error{Status: http.StatusNotFound, Type: "invalid_request_error", Param: "response_id", Code: openai.CodeNotFound,
		Message: fmt.Sprintf("Response with id '%s' not found.", id)}).Write(w)
}

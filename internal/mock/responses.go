package mock

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
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
// few byte slices the collector does not look into.
type responseStore struct {
	mu    sync.Mutex
	byID  map[string]packedResponse
	order []string
}

// packedResponse is a response as the store keeps it: what the create
// already had in hand (the answer as written, the request's body), so that
// keeping it costs the create no encoding; the input items and the dialog
// are rebuilt from them when a follow-up asks.
type packedResponse struct {
	obj   []byte // the response object (JSON), as last shown
	body  []byte // the request that created it
	prior []byte // the dialog it continued (JSON), nil without previous_response_id
	// answer is the output's text, or the function call's arguments.
	answer  string
	readyAt time.Time
}

func (p packedResponse) unpack() (storedResponse, error) {
	var r storedResponse
	if err := json.Unmarshal(p.obj, &r.obj); err != nil {
		return r, err
	}
	req, perr := openai.ParseResponses(p.body)
	if perr != nil {
		return r, errors.New(perr.Message)
	}
	msgs, _ := req.Messages()
	if p.prior != nil {
		if err := json.Unmarshal(p.prior, &r.dialog); err != nil {
			return r, err
		}
	}
	r.dialog = append(r.dialog, msgs...)
	r.dialog = append(r.dialog, openai.Message{Role: "assistant", Content: jsonText(p.answer)})
	r.input = inputItems(req, r.obj.ID)
	r.readyAt = p.readyAt
	return r, nil
}

func newResponseStore() *responseStore {
	return &responseStore{byID: map[string]packedResponse{}}
}

func (st *responseStore) put(id string, p packedResponse) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.byID[id] = p
	st.order = append(st.order, id)
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
	r, err := p.unpack()
	if err != nil {
		return storedResponse{}, false // kept by put: does not happen
	}
	if r.obj.Status == "in_progress" && !now.Before(r.readyAt) {
		r.obj.Status = finalStatus(r.obj)
		st.keep(id, p, r.obj)
	}
	return r, true
}

// keep stores p again with its object changed to obj.
func (st *responseStore) keep(id string, p packedResponse, obj respObject) {
	if b, err := json.Marshal(obj); err == nil {
		p.obj = b
		st.byID[id] = p
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
	r, err := p.unpack()
	if err != nil {
		return respObject{}, errNotFound
	}
	if !r.obj.Background {
		return respObject{}, errors.New("Only responses created with background=true can be cancelled.")
	}
	if r.obj.Status == "in_progress" {
		if now.Before(r.readyAt) {
			r.obj.Status, r.obj.Output, r.obj.Usage = "cancelled", []respItem{}, nil
		} else {
			r.obj.Status = finalStatus(r.obj)
		}
		st.keep(id, p, r.obj)
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
		ID: responseID(s.now()), Object: "response", CreatedAt: s.now().Unix(), Status: "completed",
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
	// What a follow-up continues: the dialog before this input (rebuilt
	// from the request with it), and this answer.
	kept := packedResponse{body: c.body, answer: text}
	if item.Type == "function_call" {
		kept.answer = *item.Arguments
	}
	if req.PreviousResponseID != "" {
		kept.prior, _ = json.Marshal(dialog[:len(dialog)-len(msgs)])
	}
	delay := time.Duration(s.latency.Load()) + s.tokenDelay(output-1)

	shown := obj
	if req.Background {
		// Answered at once, in progress; GET shows it complete once its
		// tokens would have been generated.
		kept.readyAt = s.now().Add(delay)
		shown.Status = "in_progress"
	}
	// Encoded once: the answer written and the response kept.
	data, err := json.Marshal(shown)
	if err != nil {
		writeJSON(w, shown) // (writes the encoding error)
		return
	}
	if obj.Store {
		kept.obj = data
		s.responses.put(obj.ID, kept)
	}
	if req.Background {
		writeRawJSON(w, data)
		return
	}
	if req.Stream {
		s.streamResponse(w, r, obj, toks)
		return
	}
	if !sleep(r.Context(), delay) {
		return
	}
	writeRawJSON(w, data)
}

// writeRawJSON writes data, already encoded, as a JSON answer.
func writeRawJSON(w http.ResponseWriter, data []byte) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(data)
}

// itemID is the id of input item n of response respID: "msg_" and 26
// base32 digits, as the mock's other ids.
func itemID(respID string, n int) string {
	sum := sha256.Sum256([]byte(respID + "/" + strconv.Itoa(n)))
	return "msg_" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:16])
}

func jsonText(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// inputItems lists a request's input as items with ids, as input_items
// shows them. The ids are made from the response's id, so that each call
// shows the same ones.
func inputItems(req *openai.ResponsesRequest, respID string) []json.RawMessage {
	var out []json.RawMessage
	for n, it := range req.Items() {
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
		m["id"] = jsonText(itemID(respID, n))
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

// responseID makes a response id as OpenAI and Azure do: resp_, then the
// creation's Unix time in 8 hex digits, the second's fraction in 65,536ths
// in 4 and 20 random ones. Ids made in
// the same second sort together, which the gateway's store of owner
// records (keyed by id) relies on for cheap writes.
func responseID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint32(b[:4], uint32(now.Unix()))
	binary.BigEndian.PutUint16(b[4:6], uint16(uint64(now.Nanosecond())<<16/1e9))
	_, _ = rand.Read(b[6:]) // never fails (crypto/rand, Go 1.24+)
	return "resp_" + hex.EncodeToString(b[:])
}

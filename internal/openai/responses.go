package openai

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// ResponsesRequest is the part of a Responses API request (POST /responses)
// the gateway reads. Fields it does not read stay in the raw body untouched.
type ResponsesRequest struct {
	Model string `json:"model"`
	// Input is a string or an array of input items.
	Input              json.RawMessage `json:"input"`
	Instructions       *string         `json:"instructions"`
	Tools              json.RawMessage `json:"tools"`
	Stream             bool            `json:"stream"`
	MaxOutputTokens    *int64          `json:"max_output_tokens"`
	Temperature        *float64        `json:"temperature"`
	PreviousResponseID string          `json:"previous_response_id"`
	Conversation       json.RawMessage `json:"conversation"`
	Background         bool            `json:"background"`
	Store              *bool           `json:"store"`

	// msgs are Messages' result, made once by ParseResponses (parsed).
	msgs   []Message
	msgsOK bool
	parsed bool
}

// Stateful reports whether the request builds on or creates state held by
// the backend beyond its own answer: a previous response, a conversation, a
// background run. Such requests are never answered from a cache.
func (r *ResponsesRequest) Stateful() bool {
	c := bytes.TrimSpace(r.Conversation)
	return r.PreviousResponseID != "" || r.Background || (len(c) > 0 && !bytes.Equal(c, []byte("null")))
}

// InputItem is one item of a Responses input: a message (role and content)
// or another item (function_call_output, reasoning, …), kept raw.
type InputItem struct {
	Type    string          `json:"type"`
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	// Output and Arguments are the text of function call items.
	Output    json.RawMessage `json:"output"`
	Arguments string          `json:"arguments"`
	Name      string          `json:"name"`
}

// Items decodes Input: a string is one user message.
func (r *ResponsesRequest) Items() []InputItem {
	in := bytes.TrimSpace(r.Input)
	if len(in) == 0 || in[0] == '"' {
		c := in
		if len(c) == 0 {
			c = nil
		}
		return []InputItem{{Type: "message", Role: "user", Content: c}}
	}
	var items []InputItem
	_ = json.Unmarshal(in, &items) // checked by ParseResponses
	return items
}

// ParseResponses validates body as a Responses API create request.
func ParseResponses(body []byte) (*ResponsesRequest, *Error) {
	return parseResponses(body, true)
}

// parseResponses is ParseResponses; with scan false it does not try
// scanResponses first (the reference its fuzz target compares with).
func parseResponses(body []byte, scan bool) (*ResponsesRequest, *Error) {
	if err := checkJSONObject(body); err != nil {
		return nil, err
	}
	var r *ResponsesRequest
	if scan {
		r, scan = scanResponses(body)
	}
	if !scan {
		r = &ResponsesRequest{}
		if err := json.Unmarshal(body, r); err != nil {
			return nil, decodeError(err)
		}
		if err := checkKeys(body, responsesShape); err != nil {
			return nil, err
		}
	}
	in := bytes.TrimSpace(r.Input)
	switch {
	case len(in) == 0 || bytes.Equal(in, []byte("null")):
		if r.PreviousResponseID == "" && len(bytes.TrimSpace(r.Conversation)) == 0 {
			return nil, BadRequest("input", "Missing required parameter: 'input'.")
		}
		r.Input = nil
	case in[0] == '"':
	case in[0] == '[':
		var items []InputItem
		if err := json.Unmarshal(in, &items); err != nil {
			return nil, BadRequest("input", "'input' must be a string or an array of input items.")
		}
		if len(items) > MaxMessages {
			return nil, BadRequest("input", "'input' has too many items.")
		}
		r.msgs, r.msgsOK = r.messages(items)
		r.parsed = true
	default:
		return nil, BadRequest("input", "'input' must be a string or an array of input items.")
	}
	if r.MaxOutputTokens != nil && *r.MaxOutputTokens < 1 {
		return nil, BadRequest("max_output_tokens", "'max_output_tokens' must be at least 1.")
	}
	if r.Temperature != nil && (*r.Temperature < 0 || *r.Temperature > 2) {
		return nil, BadRequest("temperature", "'temperature' must be between 0 and 2.")
	}
	if !r.parsed {
		r.msgs, r.msgsOK = r.messages(nil)
		r.parsed = true
	}
	return r, nil
}

// Messages returns the request's instructions and input as chat messages
// with text contents, for counting and for the cache's dialog: message items
// keep their role and text parts (input_text, output_text, text), function
// calls and their outputs become assistant and tool turns. ok is false when
// an item holds something that is not text (an image, a file, audio).
//
// ParseResponses makes them once; the slice is shared, not to be changed.
// Each message's Text is its content decoded, as ParseChat leaves it.
func (r *ResponsesRequest) Messages() (msgs []Message, ok bool) {
	if r.parsed {
		return r.msgs, r.msgsOK
	}
	return r.messages(nil)
}

// messages makes Messages from the request's items (nil: decoded from Input).
func (r *ResponsesRequest) messages(items []InputItem) (msgs []Message, ok bool) {
	in := bytes.TrimSpace(r.Input)
	if items == nil && len(in) > 0 && in[0] == '"' {
		// The common case, one user string: its JSON is a chat content as is.
		text, ok := decodeJSONString(in)
		if !ok {
			return nil, false
		}
		msgs = make([]Message, 0, 2)
		if r.Instructions != nil && *r.Instructions != "" {
			msgs = append(msgs, textMessage("system", "", *r.Instructions, nil))
		}
		return append(msgs, textMessage("user", "", text, in)), true
	}
	if items == nil {
		items = r.Items()
	}
	if r.Instructions != nil && *r.Instructions != "" {
		msgs = append(msgs, textMessage("system", "", *r.Instructions, nil))
	}
	for _, it := range items {
		switch it.Type {
		case "", "message":
			text, ok := partsText(it.Content)
			if !ok {
				return nil, false
			}
			msgs = append(msgs, textMessage(it.Role, "", text, nil))
		case "function_call":
			msgs = append(msgs, textMessage("assistant", it.Name, it.Arguments, nil))
		case "function_call_output":
			out, ok := partsText(it.Output)
			if !ok {
				return nil, false
			}
			msgs = append(msgs, textMessage("tool", "", out, nil))
		case "item_reference", "reasoning":
			// Refers to state the backend holds: nothing to count here.
		default:
			return nil, false
		}
	}
	return msgs, true
}

// responsesText is a text part of a Responses item.
func responsesText(t string) bool { return t == "input_text" || t == "output_text" || t == "text" }

// partsText reads a Responses item's content: a string, null, or text parts.
func partsText(raw json.RawMessage) (string, bool) { return ContentText(raw, responsesText) }

// ContentText reads a content that is a string, null, or an array of parts
// whose types isText accepts; ok is false for any other part or shape.
func ContentText(raw json.RawMessage, isText func(partType string) bool) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", true
	}
	if raw[0] == '"' {
		var s string
		return s, json.Unmarshal(raw, &s) == nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return "", false
	}
	var sb bytes.Buffer
	for _, p := range parts {
		if !isText(p.Type) {
			return "", false
		}
		sb.WriteString(p.Text)
	}
	return sb.String(), true
}

func jsonString(s string) json.RawMessage {
	if plainJSON(s) {
		// What json.Marshal gives, without its reflection and buffers
		// (TestJSONStringIsMarshals).
		b := make([]byte, 0, len(s)+2)
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	b, _ := json.Marshal(s)
	return b
}

// plainJSON reports whether json.Marshal writes s between quotes as it is:
// valid UTF-8 with nothing it escapes (quotes, backslashes, control
// characters, <, > and &, U+2028 and U+2029).
func plainJSON(s string) bool {
	ascii := true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		case c >= 0x80:
			ascii = false
		}
	}
	return ascii || utf8.ValidString(s) && !strings.ContainsAny(s, "\u2028\u2029")
}

// textMessage is a chat message whose content is text, decoded in Text;
// raw is the text's JSON string when the caller has it (nil: encoded here).
func textMessage(role, name, text string, raw json.RawMessage) Message {
	if raw == nil {
		raw = jsonString(text)
	}
	t := &MessageText{}
	if text != "" {
		t.Parts = []string{text}
	}
	return Message{Role: role, Name: name, Content: raw, Text: t}
}

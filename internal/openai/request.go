package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Operation is the kind of model call a request makes.
type Operation int

const (
	OpChat Operation = iota + 1
	OpEmbeddings
	OpResponses
)

// Path is the operation's path suffix in both wire formats.
func (o Operation) Path() string {
	switch o {
	case OpChat:
		return "chat/completions"
	case OpEmbeddings:
		return "embeddings"
	case OpResponses:
		return "responses"
	}
	return ""
}

func (o Operation) String() string {
	switch o {
	case OpChat:
		return "chat"
	case OpEmbeddings:
		return "embeddings"
	case OpResponses:
		return "responses"
	}
	return "unknown"
}

// Message is one chat message. Content stays raw: it is a string, null, or an
// array of content parts, and the gateway never rewrites it.
type Message struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content,omitempty"`
	Name    string          `json:"name,omitempty"`
	// Text is Content decoded, filled by ParseChat so that the stages
	// reading the text (token counting, the cache) do not decode it again.
	// Nil for a message that did not come from ParseChat.
	Text *MessageText `json:"-"`
}

// MessageText is the text of a message's content.
type MessageText struct {
	// Parts are the texts: the string content, or the text of each part of
	// type "text". None for null or absent content.
	Parts []string
	// Other is set when the content has parts that are not text (images,
	// audio, files), or a text part whose text is not a string.
	Other bool
}

// StreamOptions is the chat request's stream_options object.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// ChatRequest is the part of a chat completions request the gateway reads.
// Fields it does not read are left in the raw body untouched.
type ChatRequest struct {
	Model               string          `json:"model"`
	Messages            []Message       `json:"messages"`
	Stream              bool            `json:"stream"`
	StreamOptions       *StreamOptions  `json:"stream_options"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	N                   *int64          `json:"n"`
	Temperature         *float64        `json:"temperature"`
	Tools               json.RawMessage `json:"tools"`
	ResponseFormat      json.RawMessage `json:"response_format"`
}

// CompletionAllowance returns the completion limit the client asked for, or
// 0. With both max_tokens and max_completion_tokens it is the larger: a
// backend may honour either.
func (r *ChatRequest) CompletionAllowance() int64 {
	var n int64
	if r.MaxCompletionTokens != nil {
		n = *r.MaxCompletionTokens
	}
	if r.MaxTokens != nil {
		n = max(n, *r.MaxTokens)
	}
	return n
}

// EmbeddingsRequest is the part of an embeddings request the gateway reads.
type EmbeddingsRequest struct {
	Model string          `json:"model"`
	Input json.RawMessage `json:"input"`
	// Inputs is Input decoded, filled by ParseEmbeddings.
	Inputs []EmbeddingInput `json:"-"`
}

// MaxMessages bounds the messages of one chat request: far above any real dialog,
// low enough that a hostile request cannot make the gateway do unbounded work.
const MaxMessages = 10000

// ParseChat validates body as a chat completions request. The error, if any,
// is a 400 in the OpenAI error format naming the offending parameter.
func ParseChat(body []byte) (*ChatRequest, *Error) {
	return parseChat(body, true)
}

// parseChat is ParseChat; with scan false it does not try scanChat first
// (the reference its fuzz target compares with).
func parseChat(body []byte, scan bool) (*ChatRequest, *Error) {
	if err := checkJSONObject(body); err != nil {
		return nil, err
	}
	var r *ChatRequest
	if scan {
		r, scan = scanChat(body)
	}
	if !scan {
		r = &ChatRequest{}
		if err := json.Unmarshal(body, r); err != nil {
			return nil, decodeError(err)
		}
		if err := checkKeys(body, chatShape); err != nil {
			return nil, err
		}
	}
	if r.Messages == nil {
		return nil, BadRequest("messages", "Missing required parameter: 'messages'.")
	}
	if len(r.Messages) == 0 {
		return nil, BadRequest("messages", "'messages' must contain at least one message.")
	}
	if len(r.Messages) > MaxMessages {
		return nil, BadRequest("messages", fmt.Sprintf("'messages' has %d entries; the limit is %d.", len(r.Messages), MaxMessages))
	}
	for i := range r.Messages {
		m := &r.Messages[i]
		if m.Role == "" {
			p := fmt.Sprintf("messages[%d]", i)
			return nil, BadRequest(p+".role", "Missing required parameter: '"+p+".role'.")
		}
		t, ok := decodeContent(m.Content)
		if !ok {
			p := fmt.Sprintf("messages[%d].content", i)
			return nil, BadRequest(p, "'"+p+"' must be a string or an array of content parts.")
		}
		m.Text = t
	}
	if r.MaxTokens != nil && *r.MaxTokens < 1 {
		return nil, BadRequest("max_tokens", "'max_tokens' must be at least 1.")
	}
	if r.MaxCompletionTokens != nil && *r.MaxCompletionTokens < 1 {
		return nil, BadRequest("max_completion_tokens", "'max_completion_tokens' must be at least 1.")
	}
	if r.N != nil && (*r.N < 1 || *r.N > 128) {
		return nil, BadRequest("n", "'n' must be between 1 and 128.")
	}
	if r.Temperature != nil && (*r.Temperature < 0 || *r.Temperature > 2) {
		return nil, BadRequest("temperature", "'temperature' must be between 0 and 2.")
	}
	if r.StreamOptions != nil && !r.Stream {
		return nil, BadRequest("stream_options", "'stream_options' is only allowed when 'stream' is true.")
	}
	return r, nil
}

// ParseEmbeddings validates body as an embeddings request.
func ParseEmbeddings(body []byte) (*EmbeddingsRequest, *Error) {
	if err := checkJSONObject(body); err != nil {
		return nil, err
	}
	var r EmbeddingsRequest
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, decodeError(err)
	}
	if err := checkKeys(body, embeddingsShape); err != nil {
		return nil, err
	}
	inputs, perr := embeddingInputs(r.Input)
	if perr != nil {
		return nil, perr
	}
	r.Inputs = inputs
	return &r, nil
}

// embeddingInputs decodes the input of an embeddings request. Valid shapes are a string, an array of strings, an array of integers and an
// array of integer arrays, none empty.
func embeddingInputs(raw json.RawMessage) ([]EmbeddingInput, *Error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, BadRequest("input", "Missing required parameter: 'input'.")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []EmbeddingInput{{Text: s}}, nil
	}
	var ss []string
	if json.Unmarshal(raw, &ss) == nil && len(ss) > 0 {
		out := make([]EmbeddingInput, len(ss))
		for i, s := range ss {
			out[i] = EmbeddingInput{Text: s}
		}
		return out, nil
	}
	var ints []int64
	if json.Unmarshal(raw, &ints) == nil && len(ints) > 0 {
		return []EmbeddingInput{{Tokens: ints}}, nil
	}
	var nested [][]int64
	if json.Unmarshal(raw, &nested) == nil && len(nested) > 0 {
		out := make([]EmbeddingInput, len(nested))
		for i, t := range nested {
			if len(t) == 0 {
				return nil, BadRequest("input", "'input' must not contain an empty token array.")
			}
			out[i] = EmbeddingInput{Tokens: t}
		}
		return out, nil
	}
	return nil, BadRequest("input", "'input' must be a string, an array of strings, an array of integers or an array of integer arrays, and not empty.")
}

// EmbeddingInput is one embeddings input: Text, or a pre-tokenized input (Tokens non-nil).
type EmbeddingInput struct {
	Text   string
	Tokens []int64
}

func checkJSONObject(body []byte) *Error {
	if !utf8.Valid(body) {
		return BadRequest("", "The request body is not valid UTF-8.")
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return BadRequest("", "The request body is empty; expected a JSON object.")
	}
	if trimmed[0] != '{' {
		return BadRequest("", "The request body must be a JSON object.")
	}
	return nil // json.Unmarshal validates the syntax before decoding
}

// decodeContent decodes a message content: a string, null, absent, or an
// array of objects whose type is a string. ok is false for any other shape.
func decodeContent(raw json.RawMessage) (t *MessageText, ok bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return &MessageText{}, true // absent content is valid for assistant messages with tool calls
	}
	switch raw[0] {
	case 'n':
		return &MessageText{}, true
	case '"':
		s, ok := decodeJSONString(raw)
		if !ok {
			return nil, false
		}
		return &MessageText{Parts: []string{s}}, true
	case '[':
		var parts []struct {
			Type string          `json:"type"`
			Text json.RawMessage `json:"text"`
		}
		if json.Unmarshal(raw, &parts) != nil {
			return nil, false
		}
		t = &MessageText{}
		for _, p := range parts {
			if p.Type != "text" {
				t.Other = true
				continue
			}
			s, ok := decodeJSONString(p.Text)
			if !ok {
				t.Other = true
				continue
			}
			if s != "" {
				t.Parts = append(t.Parts, s)
			}
		}
		return t, true
	}
	return nil, false
}

// decodeJSONString decodes raw, a JSON value from a body already checked to be
// valid JSON and UTF-8, as a string. A string without escapes is its bytes
// between the quotes, copied without running the decoder.
func decodeJSONString(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 && bytes.IndexByte(raw[1:len(raw)-1], '"') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	return s, json.Unmarshal(raw, &s) == nil
}

func decodeError(err error) *Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "body"
		}
		return BadRequest(field, fmt.Sprintf("Invalid type for '%s': expected %s, got a JSON %s.", field, goTypeName(te.Type.Kind().String()), te.Value))
	}
	return BadRequest("", "The request body is not valid JSON: "+err.Error())
}

func goTypeName(kind string) string {
	switch kind {
	case "int64", "int", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	}
	return kind
}

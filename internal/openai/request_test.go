package openai

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseChat(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantParam string // "" with wantErr false means valid
		wantErr   bool
	}{
		{"minimal valid", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, "", false},
		{"content parts", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`, "", false},
		{"null content", `{"messages":[{"role":"assistant","content":null,"tool_calls":[]}]}`, "", false},
		{"stream with options", `{"messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}}`, "", false},
		{"leading whitespace", " \n{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "", false},
		{"malformed JSON", `{"messages":[`, "", true},
		{"not an object", `[1,2]`, "", true},
		{"empty body", ``, "", true},
		{"trailing garbage", `{"messages":[{"role":"user","content":"x"}]} x`, "", true},
		{"missing messages", `{"model":"gpt-4o"}`, "messages", true},
		{"empty messages", `{"messages":[]}`, "messages", true},
		{"messages wrong type", `{"messages":"hi"}`, "messages", true},
		{"model wrong type", `{"model":5,"messages":[{"role":"user","content":"x"}]}`, "model", true},
		{"stream wrong type", `{"stream":"yes","messages":[{"role":"user","content":"x"}]}`, "stream", true},
		{"max_tokens wrong type", `{"max_tokens":"10","messages":[{"role":"user","content":"x"}]}`, "max_tokens", true},
		{"max_tokens negative", `{"max_tokens":-5,"messages":[{"role":"user","content":"x"}]}`, "max_tokens", true},
		{"max_tokens absurd", `{"max_tokens":1e30,"messages":[{"role":"user","content":"x"}]}`, "max_tokens", true},
		{"missing role", `{"messages":[{"content":"x"}]}`, "messages[0].role", true},
		{"content number", `{"messages":[{"role":"user","content":5}]}`, "messages[0].content", true},
		{"content object", `{"messages":[{"role":"user","content":{"a":1}}]}`, "messages[0].content", true},
		{"n out of range", `{"n":0,"messages":[{"role":"user","content":"x"}]}`, "n", true},
		{"temperature out of range", `{"temperature":3,"messages":[{"role":"user","content":"x"}]}`, "temperature", true},
		{"stream_options without stream", `{"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`, "stream_options", true},
		{"invalid UTF-8", "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseChat([]byte(tc.body))
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("ParseChat rejected a valid body: %v", err)
				}
				if r == nil {
					t.Fatal("ParseChat returned neither request nor error")
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseChat accepted %q", tc.body)
			}
			if err.Status != 400 || err.Code != CodeInvalidRequest {
				t.Fatalf("got status %d code %q, want 400 %s", err.Status, err.Code, CodeInvalidRequest)
			}
			if tc.wantParam != "" && err.Param != tc.wantParam {
				t.Fatalf("error names param %q, want %q (message %q)", err.Param, tc.wantParam, err.Message)
			}
			if !strings.Contains(string(err.Body()), `"code":"invalid_request_error"`) {
				t.Fatalf("error body lacks the code: %s", err.Body())
			}
		})
	}
}

func TestParseChatTooManyMessages(t *testing.T) {
	var sb strings.Builder
	sb.WriteString(`{"messages":[`)
	for i := range MaxMessages + 1 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"role":"user","content":"x"}`)
	}
	sb.WriteString(`]}`)
	_, err := ParseChat([]byte(sb.String()))
	if err == nil || err.Param != "messages" {
		t.Fatalf("a request over %d messages must be refused naming messages, got %v", MaxMessages, err)
	}
}

func TestCompletionAllowance(t *testing.T) {
	r, _ := ParseChat([]byte(`{"messages":[{"role":"user","content":"x"}],"max_tokens":10,"max_completion_tokens":20}`))
	if got := r.CompletionAllowance(); got != 20 {
		t.Fatalf("max_completion_tokens takes precedence: got %d, want 20", got)
	}
	r, _ = ParseChat([]byte(`{"messages":[{"role":"user","content":"x"}]}`))
	if got := r.CompletionAllowance(); got != 0 {
		t.Fatalf("no limit asked: got %d, want 0", got)
	}
}

func TestParseEmbeddings(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		inputs  int
		wantErr bool
	}{
		{"string", `{"model":"e","input":"hello"}`, 1, false},
		{"strings", `{"input":["a","b","c"]}`, 3, false},
		{"tokens", `{"input":[1,2,3]}`, 1, false},
		{"token arrays", `{"input":[[1,2],[3]]}`, 2, false},
		{"missing input", `{"model":"e"}`, 0, true},
		{"null input", `{"input":null}`, 0, true},
		{"empty array", `{"input":[]}`, 0, true},
		{"empty token array", `{"input":[[1],[]]}`, 0, true},
		{"object input", `{"input":{"a":1}}`, 0, true},
		{"mixed array", `{"input":["a",1]}`, 0, true},
		{"model wrong type", `{"model":[],"input":"x"}`, 0, true},
		{"malformed", `{"input":`, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseEmbeddings([]byte(tc.body))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("accepted %s", tc.body)
				}
				if err.Status != 400 {
					t.Fatalf("status %d, want 400", err.Status)
				}
				return
			}
			if err != nil {
				t.Fatalf("rejected a valid body: %v", err)
			}
			if len(r.Inputs) != tc.inputs {
				t.Fatalf("got %d inputs, want %d", len(r.Inputs), tc.inputs)
			}
		})
	}
}

func FuzzParseChat(f *testing.F) {
	f.Add([]byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`))
	f.Add([]byte(`{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":5}`))
	f.Add([]byte(`{"messages":"x"}`))
	f.Add([]byte("{\"messages\":[{\"role\":\"\xff\"}]}"))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseChat(body)
		if (r == nil) == (err == nil) {
			t.Fatalf("exactly one of request and error must be set: %v %v", r, err)
		}
		if err != nil {
			if err.Status != 400 {
				t.Fatalf("parse errors are 400, got %d", err.Status)
			}
			return
		}
		if len(r.Messages) == 0 || len(r.Messages) > MaxMessages {
			t.Fatalf("accepted %d messages", len(r.Messages))
		}
		if r.CompletionAllowance() < 0 {
			t.Fatalf("accepted a negative completion allowance")
		}
		for i, m := range r.Messages {
			if want := referenceText(m.Content); !reflect.DeepEqual(m.Text, want) {
				t.Fatalf("message %d: Text = %+v, decoding the content gives %+v", i, m.Text, want)
			}
		}
	})
}

// referenceText decodes a content the slow way, with encoding/json alone.
func referenceText(raw json.RawMessage) *MessageText {
	t := &MessageText{}
	var s *string
	if json.Unmarshal(raw, &s) == nil && s != nil {
		t.Parts = []string{*s}
		return t
	}
	var parts []map[string]any
	if json.Unmarshal(raw, &parts) == nil {
		for _, p := range parts {
			text, isString := p["text"].(string)
			switch {
			case p["type"] != "text" || !isString:
				t.Other = true
			case text != "":
				t.Parts = append(t.Parts, text)
			}
		}
	}
	return t
}

func TestParseChatDecodesContentOnce(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    MessageText
	}{
		{"string", `"hello"`, MessageText{Parts: []string{"hello"}}},
		{"string with escapes", `"a\"b\n\u00e9"`, MessageText{Parts: []string{"a\"b\né"}}},
		{"empty string", `""`, MessageText{Parts: []string{""}}},
		{"null", `null`, MessageText{}},
		{"text parts", `[{"type":"text","text":"a"},{"type":"text","text":"b\u0021"}]`, MessageText{Parts: []string{"a", "b!"}}},
		{"image part is other", `[{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"a"}]`, MessageText{Parts: []string{"a"}, Other: true}},
		{"text part without a string is other", `[{"type":"text","text":5}]`, MessageText{Other: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseChat([]byte(`{"messages":[{"role":"user","content":` + tt.content + `}]}`))
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Messages[0].Text; got == nil || !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("Text = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseEmbeddings(f *testing.F) {
	f.Add([]byte(`{"model":"e","input":["a","b"]}`))
	f.Add([]byte(`{"input":[[1,2],[3]]}`))
	f.Add([]byte(`{"input":[]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseEmbeddings(body)
		if (r == nil) == (err == nil) {
			t.Fatalf("exactly one of request and error must be set")
		}
		if r != nil {
			if len(r.Inputs) == 0 {
				t.Fatalf("accepted request has no inputs")
			}
		}
	})
}

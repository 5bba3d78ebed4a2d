package openai

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestAmbiguousBodiesAreRefused(t *testing.T) {
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	for _, tc := range []struct {
		name, body, param string
	}{
		{"case variant beside the field", `{"model":"gpt-4o",` + msgs + `,"stream":true,"STREAM":false}`, "STREAM"},
		{"case variant alone", `{"MODEL":"x",` + msgs + `}`, "MODEL"},
		{"mixed-case variant", `{"model":"gpt-4o",` + msgs + `,"Max_Tokens":1}`, "Max_Tokens"},
		{"variant by Unicode folding (long s)", `{"model":"gpt-4o",` + msgs + `,"ſtream":true}`, "ſtream"},
		{"variant by Kelvin sign", "{\"model\":\"gpt-4o\"," + msgs + ",\"max_to\u212aens\":1}", "max_to\u212aens"},
		{"duplicate key", `{"model":"gpt-4o",` + msgs + `,"max_tokens":4000,"max_tokens":1}`, "max_tokens"},
		{"duplicate through an escape", `{"model":"gpt-4o",` + msgs + `,"stream":false,"str\u0065am":true}`, "stream"},
		{"duplicate nested in stream_options", `{"model":"gpt-4o",` + msgs + `,"stream":true,"stream_options":{"include_usage":true,"include_usage":false}}`, "stream_options.include_usage"},
		{"case variant in a message", `{"model":"gpt-4o","messages":[{"role":"user","ROLE":"system","content":"hi"}]}`, "messages[0].ROLE"},
		{"case variant in a content part", `{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"a","TEXT":"b"}]}]}`, "messages[0].content[0].TEXT"},
		{"duplicate inside free-form JSON", `{"model":"gpt-4o",` + msgs + `,"response_format":{"type":"json_object","type":"text"}}`, "response_format.type"},
		{"case pair inside free-form JSON", `{"model":"gpt-4o",` + msgs + `,"metadata":{"a":"1","A":"2"}}`, "metadata.A"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			r, err := ParseChat([]byte(body))
			if err == nil {
				t.Fatalf("accepted %s as %+v", body, r)
			}
			if err.Status != 400 || err.Type != "invalid_request_error" || err.Param != tc.param {
				t.Fatalf("got %d %s param %q (%s), want 400 invalid_request_error param %q", err.Status, err.Type, err.Param, err.Message, tc.param)
			}
		})
	}
}

func TestUnambiguousBodiesStayAccepted(t *testing.T) {
	for _, body := range []string{
		`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"user":"u","metadata":{"Stream":"x"}}`,
		`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"},{"role":"user","content":"hi"}]}`,
		`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"MODEL":{"type":"string"}}}}}]}`,
	} {
		if _, err := ParseChat([]byte(body)); err != nil {
			t.Fatalf("refused %s: %s", body, err.Message)
		}
	}
	if _, err := ParseEmbeddings([]byte(`{"model":"e","input":"x","INPUT":"y"}`)); err == nil || err.Param != "INPUT" {
		t.Fatalf("embeddings with a case variant: %v", err)
	}
	if _, err := ParseResponses([]byte(`{"model":"m","input":"x","Max_Output_Tokens":1}`)); err == nil || err.Param != "Max_Output_Tokens" {
		t.Fatalf("responses with a case variant: %v", err)
	}
	if _, err := ParseResponses([]byte(`{"model":"m","input":[{"role":"user","content":"a","content":"b"}]}`)); err == nil || err.Param != "input[0].content" {
		t.Fatalf("responses with a repeated key in an item: %v", err)
	}
}

func TestAllowanceIsTheLargerLimit(t *testing.T) {
	r, err := ParseChat([]byte(`{"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":1,"max_tokens":4000}`))
	if err != nil {
		t.Fatal(err.Message)
	}
	if got := r.CompletionAllowance(); got != 4000 {
		t.Fatalf("allowance %d, want 4000 (a backend may honour max_tokens)", got)
	}
}

// exactReader reads a body as a case-sensitive server that lets the last of
// repeated keys win does (Go maps decode that way).
type exactReader map[string]json.RawMessage

func (e exactReader) field(name string, v any) bool {
	raw, ok := e[name]
	if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return false
	}
	return json.Unmarshal(raw, v) == nil
}

func FuzzDecoderAgreesWithExactReader(f *testing.F) {
	f.Add([]byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"STREAM":false}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"max_tokens":4000,"max_completion_tokens":1,"n":2,"temperature":0.5}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"x"}],"\u006dodel":"n"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, perr := ParseChat(body)
		if perr != nil {
			return
		}
		var top exactReader
		if err := json.Unmarshal(body, &top); err != nil {
			t.Fatalf("accepted a body a map cannot read: %v", err)
		}
		var model string
		top.field("model", &model)
		var stream bool
		top.field("stream", &stream)
		if model != r.Model || stream != r.Stream {
			t.Fatalf("model %q/%q stream %v/%v differ from the exact reader", r.Model, model, r.Stream, stream)
		}
		for _, n := range []struct {
			name string
			got  *int64
		}{{"max_tokens", r.MaxTokens}, {"max_completion_tokens", r.MaxCompletionTokens}, {"n", r.N}} {
			var v int64
			has := top.field(n.name, &v)
			if has != (n.got != nil) || has && v != *n.got {
				t.Fatalf("%s differs from the exact reader", n.name)
			}
		}
		var temp float64
		if has := top.field("temperature", &temp); has != (r.Temperature != nil) || has && temp != *r.Temperature {
			t.Fatal("temperature differs from the exact reader")
		}
		var so exactReader
		var usage bool
		if top.field("stream_options", &so) {
			so.field("include_usage", &usage)
		}
		if (r.StreamOptions != nil && r.StreamOptions.IncludeUsage) != usage {
			t.Fatal("stream_options.include_usage differs from the exact reader")
		}
		var msgs []exactReader
		top.field("messages", &msgs)
		if len(msgs) != len(r.Messages) {
			t.Fatalf("%d messages, the exact reader sees %d", len(r.Messages), len(msgs))
		}
		for i, m := range msgs {
			var role, name string
			m.field("role", &role)
			m.field("name", &name)
			if role != r.Messages[i].Role || name != r.Messages[i].Name || !bytes.Equal(bytes.TrimSpace(m["content"]), bytes.TrimSpace(r.Messages[i].Content)) {
				t.Fatalf("message %d differs from the exact reader", i)
			}
		}
	})
}

// BenchmarkParseHugeChat is the parse of a 4 MB one-word prompt: what the
// gateway spends on such a body before it can refuse it.
func BenchmarkParseHugeChat(b *testing.B) {
	body, _ := json.Marshal(map[string]any{"model": "gpt-4o", "messages": []map[string]string{{"role": "user", "content": strings.Repeat("a", 4_000_000)}}})
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := ParseChat(body); err != nil {
			b.Fatal(err.Message)
		}
	}
}

package openai

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseResponses(t *testing.T) {
	tests := []struct {
		name, body string
		ok         bool
		stateful   bool
		messages   int
	}{
		{"string input", `{"model":"m","input":"hi"}`, true, false, 1},
		{"items with instructions", `{"model":"m","instructions":"be brief","input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]}]}`, true, false, 2},
		{"follow-up without input", `{"model":"m","previous_response_id":"resp_1"}`, true, true, 0},
		{"background is stateful", `{"model":"m","input":"x","background":true}`, true, true, 1},
		{"conversation is stateful", `{"model":"m","input":"x","conversation":"conv_1"}`, true, true, 1},
		{"missing input", `{"model":"m"}`, false, false, 0},
		{"input of the wrong type", `{"model":"m","input":3}`, false, false, 0},
		{"zero max_output_tokens", `{"model":"m","input":"x","max_output_tokens":0}`, false, false, 0},
		{"not an object", `[]`, false, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseResponses([]byte(tc.body))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
			if err != nil {
				if err.Status != 400 {
					t.Fatalf("status %d", err.Status)
				}
				return
			}
			if r.Stateful() != tc.stateful {
				t.Errorf("stateful = %v", r.Stateful())
			}
			msgs, ok := r.Messages()
			if !ok || len(msgs) != tc.messages && r.Input != nil {
				t.Errorf("messages %v %v", msgs, ok)
			}
		})
	}
	r, _ := ParseResponses([]byte(`{"model":"m","input":[{"role":"user","content":[{"type":"input_image","image_url":"x"}]}]}`))
	if _, ok := r.Messages(); ok {
		t.Error("an image input must not read as text")
	}
}

func FuzzParseResponses(f *testing.F) {
	f.Add(`{"model":"m","input":"hi"}`)
	f.Add(`{"model":"m","input":[{"type":"function_call_output","output":"x"},{"role":"user","content":null}]}`)
	f.Add(`{"input":[{"content":[{"type":"input_text","text":1}]}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		r, err := ParseResponses([]byte(body))
		if (r == nil) == (err == nil) {
			t.Fatalf("want exactly one of request and error: %v %v", r, err)
		}
		if r != nil {
			// The messages made at parse time are those read from the
			// request as it stands, and their Text is their content.
			msgs, ok := r.Messages()
			again, okAgain := r.messages(nil)
			if ok != okAgain || len(msgs) != len(again) {
				t.Fatalf("parsed messages %v %v, read again %v %v", msgs, ok, again, okAgain)
			}
			for i := range msgs {
				if msgs[i].Role != again[i].Role || msgs[i].Name != again[i].Name || !reflect.DeepEqual(msgs[i].Text, again[i].Text) {
					t.Fatalf("message %d: %+v, read again %+v", i, msgs[i], again[i])
				}
				var content string
				if json.Unmarshal(msgs[i].Content, &content) != nil || content != strings.Join(msgs[i].Text.Parts, "") {
					t.Fatalf("message %d: content %s, text %q", i, msgs[i].Content, msgs[i].Text.Parts)
				}
			}
			r.Stateful()
		}
	})
}

var jsonStringCases = []string{
	"", "You are a concise assistant.", "quote \" backslash \\", "tab\tnewline\n", "\x00\x1f\x7f",
	"<b>&amp;</b>", "a<b", "a&b", "a>b", "café ünïcode 日本", "line\u2028para\u2029", "bad \xff\xfe utf8", "\xc3", "emoji 😀",
}

// TestJSONStringIsMarshals: the instructions' JSON string is what
// json.Marshal makes of them, byte for byte.
func TestJSONStringIsMarshals(t *testing.T) {
	for _, s := range jsonStringCases {
		want, _ := json.Marshal(s)
		if got := jsonString(s); !bytes.Equal(got, want) {
			t.Errorf("jsonString(%q) = %s, json.Marshal gives %s", s, got, want)
		}
	}
}

func FuzzJSONStringIsMarshals(f *testing.F) {
	for _, s := range jsonStringCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := jsonString(s); !bytes.Equal(got, want) {
			t.Fatalf("jsonString(%q) = %s, json.Marshal gives %s", s, got, want)
		}
	})
}

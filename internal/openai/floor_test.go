package openai

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestScanPromptFloor(t *testing.T) {
	image := `{"type":"image_url","image_url":{"url":"data:image/png;base64,` + strings.Repeat("iVBORw0K", 1000) + `"}}`
	for _, tc := range []struct {
		name   string
		op     Operation
		body   string
		text   int64
		tokens int64
	}{
		{"a string content counts its bytes", OpChat, `{"model":"m","messages":[{"role":"user","content":"hello"},{"role":"assistant","content":"ok"}]}`, 7, 0},
		{"text parts count, an image's base64 does not", OpChat, `{"messages":[{"role":"user","content":[{"type":"text","text":"abc"},` + image + `,{"type":"text","text":"de"}]}]}`, 5, 0},
		{"a part's type may follow its text", OpChat, `{"messages":[{"content":[{"text":"abcd","type":"text"}],"role":"user"}]}`, 4, 0},
		{"audio data is not text", OpChat, `{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"` + strings.Repeat("A", 5000) + `","format":"wav"}}]}]}`, 0, 0},
		{"a part typed with an escape is not counted", OpChat, `{"messages":[{"role":"user","content":[{"type":"te\u0078t","text":"abc"}]}]}`, 0, 0},
		{"an escape counts one byte", OpChat, `{"messages":[{"role":"user","content":"a\nb\u00e9\"c\\"}]}`, 7, 0},
		{"other fields are not prompt", OpChat, `{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","description":"` + strings.Repeat("x", 500) + `"}}],"metadata":{"content":"zzz"}}`, 2, 0},
		{"a key spelled otherwise is not read", OpChat, `{"Messages":[{"role":"user","content":"hello"}]}`, 0, 0},
		{"white space between tokens", OpChat, "{ \"messages\" : [ { \"role\" : \"user\" , \"content\" : \"hello\" } ] }", 5, 0},
		{"embeddings strings", OpEmbeddings, `{"model":"e","input":["ab","cde"]}`, 5, 0},
		{"embeddings one string", OpEmbeddings, `{"input":"abcdef","model":"e"}`, 6, 0},
		{"embeddings token arrays", OpEmbeddings, `{"input":[[1,2,3],[4]]}`, 0, 4},
		{"embeddings one token array", OpEmbeddings, `{"input":[1,-2]}`, 0, 2},
		{"responses string input with instructions", OpResponses, `{"instructions":"be brief","input":"hello"}`, 13, 0},
		{"responses instructions without input", OpResponses, `{"instructions":"be brief","previous_response_id":"resp_1"}`, 8, 0},
		{"responses items: instructions not counted (an image makes the input counted raw, alone)", OpResponses,
			`{"instructions":"be brief","input":[{"role":"user","content":[{"type":"input_text","text":"abc"},{"type":"input_image","image_url":"data:image/png;base64,AAAA"}]}]}`, 3, 0},
		{"responses function call and output", OpResponses,
			`{"input":[{"type":"function_call","name":"f","arguments":"{}","call_id":"c"},{"type":"function_call_output","call_id":"c","output":"result"},{"type":"message","role":"user","content":"ok"}]}`, 10, 0},
		{"responses reasoning content is not counted", OpResponses, `{"input":[{"type":"reasoning","content":[{"type":"text","text":"secret"}]},{"role":"user","content":"hi"}]}`, 2, 0},
		{"not an object", OpChat, `["messages"]`, 0, 0},
		{"a string that does not end", OpChat, `{"messages":[{"role":"user","content":"hello`, 0, 0},
		{"not JSON after the text", OpChat, `{"messages":[{"role":"user","content":"hello"} garbage`, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := ScanPromptFloor(tc.op, []byte(tc.body))
			if f.TextBytes != tc.text || f.Tokens != tc.tokens {
				t.Fatalf("floor = %+v, want %d text bytes and %d tokens", f, tc.text, tc.tokens)
			}
		})
	}
}

func TestScanPromptFloorNamesThePlainModel(t *testing.T) {
	for body, want := range map[string]string{
		`{"model":"gpt-4o","messages":[]}`:         "gpt-4o",
		`{"messages":[],"model":"gpt-4o"}`:         "gpt-4o",
		`{"model":"gpt\u002d4o","messages":[]}`:    "",
		`{"model":["gpt-4o"],"messages":[]}`:       "",
		`{"metadata":{"model":"x"},"messages":[]}`: "",
		`{"Model":"gpt-4o","messages":[]}`:         "",
	} {
		if got := ScanPromptFloor(OpChat, []byte(body)).Model; got != want {
			t.Errorf("%s: model %q, want %q", body, got, want)
		}
	}
	if got := ScanPromptFloor(OpResponses, []byte(`{"input":"x","model":"m"}`)).Model; got != "m" {
		t.Errorf("responses: model %q", got)
	}
	if got := ScanPromptFloor(OpEmbeddings, []byte(`{"input":"x","model":"e"}`)).Model; got != "e" {
		t.Errorf("embeddings: model %q", got)
	}
}

// countedText is what the token count of a parsed request covers: the bytes
// of text it tokenizes and the number of pre-tokenized inputs. It is the
// reference ScanPromptFloor must never exceed.
func countedText(t *testing.T, op Operation, body []byte) (text, tokens int64, ok bool) {
	switch op {
	case OpChat:
		r, err := ParseChat(body)
		if err != nil {
			return 0, 0, false
		}
		for _, m := range r.Messages {
			for _, p := range m.Text.Parts {
				text += int64(len(p))
			}
		}
	case OpEmbeddings:
		r, err := ParseEmbeddings(body)
		if err != nil {
			return 0, 0, false
		}
		for _, in := range r.Inputs {
			text += int64(len(in.Text))
			tokens += int64(len(in.Tokens))
		}
	case OpResponses:
		r, err := ParseResponses(body)
		if err != nil {
			return 0, 0, false
		}
		msgs, all := r.Messages()
		if !all { // counted as the raw input's text
			return int64(len(r.Input)), 0, true
		}
		for _, m := range msgs {
			var s string
			if err := json.Unmarshal(m.Content, &s); err != nil {
				t.Fatalf("message content %s: %v", m.Content, err)
			}
			text += int64(len(s))
		}
	}
	return text, tokens, true
}

func FuzzPromptFloorIsALowerBound(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hello"}]}`,
		`{"messages":[{"role":"user","content":[{"text":"ab\"c","type":"text"},{"type":"image_url","image_url":{"url":"data:x"}}]}]}`,
		`{"messages":[{"role":"user","content":"\u00e9\ud83d\ude00\\"}],"messages":[]}`,
		`{"input":[[1,2],[3]],"model":"e"}`,
		`{"input":["a","bc"]}`,
		`{"instructions":"x","input":"hello"}`,
		`{"instructions":"be brief","input":[{"role":"user","content":[{"type":"input_text","text":"abc"},{"type":"input_image","image_url":"u"}]}]}`,
		`{"input":[{"type":"function_call","arguments":"{}"},{"type":"function_call_output","output":[{"type":"output_text","text":"r"}]},{"type":"reasoning","content":"s"}]}`,
	} {
		for op := OpChat; op <= OpResponses; op++ {
			f.Add(uint8(op), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, opByte uint8, body []byte) {
		op := Operation(opByte%3) + OpChat
		floor := ScanPromptFloor(op, body)
		if floor.TextBytes < 0 || floor.Tokens < 0 {
			t.Fatalf("negative floor %+v", floor)
		}
		text, tokens, ok := countedText(t, op, body)
		if !ok {
			return // refused by the parse whatever the floor says
		}
		if floor.TextBytes > text || floor.Tokens > tokens {
			t.Fatalf("%s body %q: floor %+v exceeds what is counted: %d text bytes, %d tokens", op, body, floor, text, tokens)
		}
	})
}

// BenchmarkScanHugeChat is the length pass over a 4 MB one-word prompt,
// what the gateway now spends before refusing it (compare BenchmarkParseHugeChat).
func BenchmarkScanHugeChat(b *testing.B) {
	body, _ := json.Marshal(map[string]any{"model": "gpt-4o", "messages": []map[string]string{{"role": "user", "content": strings.Repeat("a", 4_000_000)}}})
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if f := ScanPromptFloor(OpChat, body); f.TextBytes != 4_000_000 {
			b.Fatal(f)
		}
	}
}

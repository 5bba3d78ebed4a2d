package node

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/internal/openai"
)

func TestWithStreamUsage(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"absent: inserted in front", `{"model":"m","stream":true}`, `{"stream_options":{"include_usage":true},"model":"m","stream":true}`},
		{"false: turned on", `{"stream":true,"stream_options":{"include_usage":false}}`, `{"stream":true,"stream_options":{"include_usage":true}}`},
		{"other options kept", `{"stream_options":{"x":1}}`, `{"stream_options":{"include_usage":true,"x":1}}`},
		{"not JSON: unchanged", `nope`, `nope`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := string(withStreamUsage([]byte(tc.in)))
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestReplayStreamRoundTrip(t *testing.T) {
	stored := `{"id":"c9","object":"chat.completion","created":7,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"A longer answer that is cut into several word-sized pieces when replayed."},"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":14,"total_tokens":18}}`
	for _, withUsage := range []bool{false, true} {
		sse := replayStream([]byte(stored), withUsage)
		er := openai.NewEventReader(bytes.NewReader(sse))
		tap := &streamTap{capture: true, clientUsage: true}
		var n int
		sawUsage, done := false, false
		for {
			ev, err := er.Next()
			if err != nil {
				break
			}
			if ev.Done() {
				done = true
				continue
			}
			n++
			sawUsage = sawUsage || bytes.Contains(ev.Data, []byte(`"usage"`))
			tap.see(ev.Data)
		}
		if !done || n < 4 || sawUsage != withUsage {
			t.Fatalf("withUsage=%v: %d chunks, [DONE]=%v, usage chunk=%v", withUsage, n, done, sawUsage)
		}
		// Reassembled, the stream is the stored answer again.
		body := tap.completion()
		if body == nil {
			t.Fatal("the replayed stream does not reassemble")
		}
		var got, want map[string]any
		_ = json.Unmarshal(body, &got)
		_ = json.Unmarshal([]byte(stored), &want)
		gm := got["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"]
		wm := want["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"]
		if gm != wm || got["id"] != want["id"] {
			t.Errorf("reassembled %s", body)
		}
	}
}

func TestStreamTapRefusesToCache(t *testing.T) {
	chunk := func(delta, finish string) string {
		return `{"id":"x","choices":[{"index":0,"delta":` + delta + `,"finish_reason":` + finish + `}]}`
	}
	tests := []struct {
		name   string
		chunks []string
	}{
		{"unfinished choice", []string{chunk(`{"content":"hi"}`, "null")}},
		{"content filter", []string{chunk(`{"content":"hi"}`, `"content_filter"`)}},
		{"tool calls", []string{chunk(`{"tool_calls":[{"index":0,"function":{"name":"f"}}]}`, `"tool_calls"`)}},
		{"chunk it cannot read", []string{`{"choices":"oops"}`, chunk(`{"content":"hi"}`, `"stop"`)}},
		{"no choices at all", []string{`{"id":"x","choices":[]}`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tap := &streamTap{capture: true}
			for _, c := range tc.chunks {
				tap.see([]byte(c))
			}
			if body := tap.completion(); body != nil {
				t.Errorf("cached: %s", body)
			}
		})
	}
}

// TestStreamTapInterleavedChoices is an n=2 stream: a choice first seen
// after another has content must not disturb what was collected.
func TestStreamTapInterleavedChoices(t *testing.T) {
	tap := &streamTap{capture: true}
	for _, c := range []string{
		`{"id":"x","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`,
		`{"id":"x","choices":[{"index":0,"delta":{"content":"left"}}]}`,
		`{"id":"x","choices":[{"index":1,"delta":{"role":"assistant","content":""}}]}`,
		`{"id":"x","choices":[{"index":0,"delta":{"content":" done"},"finish_reason":"stop"}]}`,
		`{"id":"x","choices":[{"index":1,"delta":{"content":"right"},"finish_reason":"stop"}]}`,
	} {
		tap.see([]byte(c))
	}
	var got struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	body := tap.completion()
	if json.Unmarshal(body, &got) != nil || len(got.Choices) != 2 || got.Choices[0].Message.Content != "left done" || got.Choices[1].Message.Content != "right" {
		t.Errorf("reassembled %s, want choices \"left done\" and \"right\"", body)
	}
}

// FuzzStreamTap feeds arbitrary event data to the tap and arbitrary stored
// bodies to the replay: neither may panic, and a reassembled answer is JSON.
func FuzzStreamTap(f *testing.F) {
	f.Add(`{"id":"a","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}],"usage":{"total_tokens":3}}`)
	f.Add(`{"choices":[{"index":9999999,"delta":{}}]}`)
	f.Add(`{"choices":[{"index":-1}]}`)
	f.Add(`[]`)
	f.Add("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"b\"}}]}\n{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"c\"}}]}")
	f.Fuzz(func(t *testing.T, data string) {
		tap := &streamTap{capture: true}
		for _, part := range strings.Split(data, "\n") {
			tap.see([]byte(part))
		}
		if body := tap.completion(); body != nil && !json.Valid(body) {
			t.Fatalf("invalid JSON reassembled: %s", body)
		}
		out := replayStream([]byte(data), true)
		if !bytes.HasSuffix(out, []byte("data: [DONE]\n\n")) {
			t.Fatalf("replay does not end with [DONE]: %q", out)
		}
	})
}

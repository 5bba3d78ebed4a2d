package mock

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

type respView struct {
	ID                 string  `json:"id"`
	Object             string  `json:"object"`
	Status             string  `json:"status"`
	PreviousResponseID *string `json:"previous_response_id"`
	Output             []struct {
		Type      string `json:"type"`
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
		Content   []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	} `json:"output"`
	Usage *struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

func (r respView) text() string {
	var sb strings.Builder
	for _, o := range r.Output {
		for _, c := range o.Content {
			sb.WriteString(c.Text)
		}
	}
	return sb.String()
}

func TestResponsesLifecycle(t *testing.T) {
	for _, prefix := range []string{"/v1", "/openai/v1"} {
		t.Run(prefix, func(t *testing.T) {
			_, ts := newTestServer(t, Options{})
			resp, body := post(t, ts, prefix+"/responses", `{"model":"gpt-4o","input":"Tell me about rivers."}`)
			if resp.StatusCode != 200 {
				t.Fatalf("create: %d %s", resp.StatusCode, body)
			}
			first := decode[respView](t, body)
			if first.Object != "response" || first.Status != "completed" || !strings.HasPrefix(first.ID, "resp_") || first.text() == "" {
				t.Fatalf("create: %s", body)
			}
			if u := first.Usage; u == nil || u.OutputTokens != DefaultCompletionTokens || u.InputTokens < 3 || u.TotalTokens != u.InputTokens+u.OutputTokens {
				t.Fatalf("usage: %s", body)
			}
			resp, body = do(t, ts, "GET", prefix+"/responses/"+first.ID, "", nil)
			if got := decode[respView](t, body); resp.StatusCode != 200 || got.ID != first.ID || got.text() != first.text() {
				t.Fatalf("get: %d %s", resp.StatusCode, body)
			}
			resp, body = do(t, ts, "GET", prefix+"/responses/"+first.ID+"/input_items", "", nil)
			if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"input_text"`)) || !bytes.Contains(body, []byte("Tell me about rivers.")) {
				t.Fatalf("input_items: %d %s", resp.StatusCode, body)
			}
			// The items keep their ids from one call to the next (a client pages with after=).
			if _, again := do(t, ts, "GET", prefix+"/responses/"+first.ID+"/input_items", "", nil); !bytes.Equal(again, body) {
				t.Fatalf("input_items changed between calls:\n%s\n%s", body, again)
			}
			// A follow-up continues the dialog: its input counts the previous turn.
			resp, body = post(t, ts, prefix+"/responses", `{"model":"gpt-4o","previous_response_id":"`+first.ID+`","input":"And lakes?"}`)
			next := decode[respView](t, body)
			if resp.StatusCode != 200 || next.PreviousResponseID == nil || *next.PreviousResponseID != first.ID || next.Usage.InputTokens <= first.Usage.InputTokens+first.Usage.OutputTokens {
				t.Fatalf("follow-up: %d %s", resp.StatusCode, body)
			}
			// And a follow-up of the follow-up carries both turns.
			resp, body = post(t, ts, prefix+"/responses", `{"model":"gpt-4o","previous_response_id":"`+next.ID+`","input":"And seas?"}`)
			if third := decode[respView](t, body); resp.StatusCode != 200 || third.Usage.InputTokens <= next.Usage.InputTokens+next.Usage.OutputTokens {
				t.Fatalf("second follow-up: %d %s", resp.StatusCode, body)
			}
			resp, body = do(t, ts, "DELETE", prefix+"/responses/"+first.ID, "", nil)
			if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"deleted":true`)) {
				t.Fatalf("delete: %d %s", resp.StatusCode, body)
			}
			for _, path := range []string{"/responses/" + first.ID, "/responses/" + first.ID + "/input_items"} {
				if resp, body := do(t, ts, "GET", prefix+path, "", nil); resp.StatusCode != 404 {
					t.Errorf("GET %s after delete: %d %s", path, resp.StatusCode, body)
				}
			}
			if resp, body := post(t, ts, prefix+"/responses", `{"model":"gpt-4o","previous_response_id":"`+first.ID+`","input":"x"}`); resp.StatusCode != 404 {
				t.Errorf("continuing a deleted response: %d %s", resp.StatusCode, body)
			}
		})
	}
}

func TestResponsesMaxOutputTokensIsIncomplete(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	_, body := post(t, ts, "/v1/responses", `{"model":"gpt-4o","input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]}],"max_output_tokens":7}`)
	r := decode[respView](t, body)
	if r.Status != "incomplete" || r.Usage.OutputTokens != 7 || !bytes.Contains(body, []byte(`"reason":"max_output_tokens"`)) {
		t.Fatalf("%s", body)
	}
}

func TestResponsesBackgroundCancel(t *testing.T) {
	_, ts := newTestServer(t, Options{Latency: time.Hour})
	_, body := post(t, ts, "/v1/responses", `{"model":"gpt-4o","input":"slow","background":true}`)
	r := decode[respView](t, body)
	if r.Status != "in_progress" {
		t.Fatalf("background create: %s", body)
	}
	resp, body := post(t, ts, "/v1/responses/"+r.ID+"/cancel", "")
	if resp.StatusCode != 200 || decode[respView](t, body).Status != "cancelled" {
		t.Fatalf("cancel: %d %s", resp.StatusCode, body)
	}
	_, quick := newTestServer(t, Options{})
	_, body = post(t, quick, "/v1/responses", `{"model":"gpt-4o","input":"fast"}`)
	fg := decode[respView](t, body)
	if resp, _ := post(t, quick, "/v1/responses/"+fg.ID+"/cancel", ""); resp.StatusCode != 400 {
		t.Errorf("cancelling a foreground response: %d, want 400", resp.StatusCode)
	}
}

// sseEvents reads a typed event stream: each event's name and data.
func sseEvents(t *testing.T, body []byte) (names []string, data []string) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			names = append(names, v)
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok {
			data = append(data, v)
		}
	}
	return names, data
}

func TestResponsesStream(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	resp, body := post(t, ts, "/openai/v1/responses", `{"model":"gpt-4o","input":"Stream me.","stream":true}`)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	names, data := sseEvents(t, body)
	if len(names) < 8 || names[0] != "response.created" || names[len(names)-1] != "response.completed" || len(names) != len(data) {
		t.Fatalf("events: %v", names)
	}
	var text strings.Builder
	for i, n := range names {
		var ev struct {
			Type  string `json:"type"`
			Seq   int    `json:"sequence_number"`
			Delta string `json:"delta"`
		}
		if err := json.Unmarshal([]byte(data[i]), &ev); err != nil || ev.Type != n || ev.Seq != i {
			t.Fatalf("event %d %s: %s", i, n, data[i])
		}
		if n == "response.output_text.delta" {
			text.WriteString(ev.Delta)
		}
	}
	var done struct {
		Response respView `json:"response"`
	}
	_ = json.Unmarshal([]byte(data[len(data)-1]), &done)
	if done.Response.text() != text.String() || done.Response.Usage == nil || done.Response.Usage.OutputTokens != DefaultCompletionTokens {
		t.Fatalf("completed event %s does not match the deltas %q", data[len(data)-1], text.String())
	}
}

func TestAzureV1Routes(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"v1 chat: model in the body, no api-version", "POST", "/openai/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, 200},
		{"v1 embeddings", "POST", "/openai/v1/embeddings", `{"model":"text-embedding-3-small","input":"hi"}`, 200},
		{"v1 models", "GET", "/openai/v1/models", "", 200},
		{"models needs api-version", "GET", "/openai/models", "", 400},
		{"models with api-version", "GET", "/openai/models?api-version=2025-04-01-preview", "", 200},
		{"preview responses needs api-version", "POST", "/openai/responses", `{"model":"gpt-4o","input":"hi"}`, 400},
		{"preview responses", "POST", "/openai/responses?api-version=2025-04-01-preview", `{"model":"gpt-4o","input":"hi"}`, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if resp, body := do(t, ts, tc.method, tc.path, tc.body, nil); resp.StatusCode != tc.want {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		})
	}
}

const weatherTool = `{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}}}`

func TestToolCalls(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	tests := []struct {
		name, body string
		call       bool
	}{
		{"auto with tools calls one", `{"model":"gpt-4o","messages":[{"role":"user","content":"weather?"}],"tools":[` + weatherTool + `]}`, true},
		{"required calls one", `{"model":"gpt-4o","messages":[{"role":"user","content":"weather?"}],"tools":[` + weatherTool + `],"tool_choice":"required"}`, true},
		{"named function", `{"model":"gpt-4o","messages":[{"role":"user","content":"weather?"}],"tools":[` + weatherTool + `],"tool_choice":{"type":"function","function":{"name":"get_weather"}}}`, true},
		{"none answers in text", `{"model":"gpt-4o","messages":[{"role":"user","content":"weather?"}],"tools":[` + weatherTool + `],"tool_choice":"none"}`, false},
		{"after a tool result, auto answers in text", `{"model":"gpt-4o","messages":[{"role":"user","content":"weather?"},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"sunny"}],"tools":[` + weatherTool + `]}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, body := post(t, ts, "/v1/chat/completions", tc.body)
			var c struct {
				Choices []struct {
					FinishReason string `json:"finish_reason"`
					Message      struct {
						Content   *string `json:"content"`
						ToolCalls []struct {
							ID       string `json:"id"`
							Function struct{ Name, Arguments string }
						} `json:"tool_calls"`
					} `json:"message"`
				} `json:"choices"`
			}
			if err := json.Unmarshal(body, &c); err != nil || len(c.Choices) != 1 {
				t.Fatalf("%s", body)
			}
			ch := c.Choices[0]
			if !tc.call {
				if ch.FinishReason != "stop" || ch.Message.Content == nil || len(ch.Message.ToolCalls) > 0 {
					t.Fatalf("want text: %s", body)
				}
				return
			}
			if ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 || ch.Message.ToolCalls[0].Function.Name != "get_weather" {
				t.Fatalf("want a call: %s", body)
			}
			var args struct {
				City string `json:"city"`
				Days *int   `json:"days"`
			}
			if err := json.Unmarshal([]byte(ch.Message.ToolCalls[0].Function.Arguments), &args); err != nil || args.City == "" || args.Days == nil {
				t.Fatalf("arguments do not fit the schema: %s", body)
			}
		})
	}
	// Streamed: the call arrives as deltas and the stream ends tool_calls.
	_, body := post(t, ts, "/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"weather?"}],"tools":[`+weatherTool+`],"tool_choice":"required"}`)
	if !bytes.Contains(body, []byte(`"name":"get_weather"`)) || !bytes.Contains(body, []byte(`"finish_reason":"tool_calls"`)) || !bytes.HasSuffix(body, []byte("data: [DONE]\n\n")) {
		t.Fatalf("stream: %s", body)
	}
	// The Responses API: a function_call output item.
	_, body = post(t, ts, "/v1/responses", `{"model":"gpt-4o","input":"weather?","tools":[{"type":"function","name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}],"tool_choice":"required"}`)
	r := decode[respView](t, body)
	if len(r.Output) != 1 || r.Output[0].Type != "function_call" || r.Output[0].Name != "get_weather" || !json.Valid([]byte(r.Output[0].Arguments)) {
		t.Fatalf("responses tool call: %s", body)
	}
}

func TestJSONOutput(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	schema := `{"type":"object","properties":{"name":{"type":"string"},"tags":{"type":"array","items":{"type":"string"}},"score":{"type":"number"}},"required":["name","tags","score"]}`
	tests := []struct{ name, path, body string }{
		{"chat json_object", "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"as json"}],"response_format":{"type":"json_object"}}`},
		{"chat json_schema", "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"as json"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":` + schema + `}}}`},
		{"responses json_schema", "/v1/responses", `{"model":"gpt-4o","input":"as json","text":{"format":{"type":"json_schema","name":"x","schema":` + schema + `}}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, ts, tc.path, tc.body)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			var content string
			if strings.Contains(tc.path, "responses") {
				content = decode[respView](t, body).text()
			} else {
				var c struct {
					Choices []struct {
						Message struct{ Content string } `json:"message"`
					} `json:"choices"`
				}
				_ = json.Unmarshal(body, &c)
				content = c.Choices[0].Message.Content
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(content), &v); err != nil {
				t.Fatalf("content is not JSON: %q", content)
			}
			if strings.Contains(tc.name, "schema") && (v["name"] == nil || v["tags"] == nil || v["score"] == nil) {
				t.Fatalf("content lacks the schema's properties: %s", content)
			}
		})
	}
}

func FuzzExampleJSON(f *testing.F) {
	f.Add(`{"type":"object","properties":{"a":{"type":["string","null"]},"b":{"type":"array","items":{"enum":[1,2]}}}}`)
	f.Add(`{"properties":{"x":{"properties":{"y":{}}}}}`)
	f.Fuzz(func(t *testing.T, schema string) {
		if out := exampleJSON(json.RawMessage(schema), 0); !json.Valid(out) && json.Valid([]byte(schema)) {
			t.Fatalf("invalid JSON %s for schema %s", out, schema)
		}
	})
}

var _ = http.StatusOK

// TestCutStreams: with CutStreamsAfter a stream breaks off after that many
// events, chat and Responses alike: the client reads an unexpected end and
// never the stream's proper end.
func TestCutStreams(t *testing.T) {
	_, ts := newTestServer(t, Options{CutStreamsAfter: 3})
	tests := []struct {
		name, path, body, end string
	}{
		{"responses", "/v1/responses", `{"model":"gpt-4o","input":"Stream me.","stream":true}`, "response.completed"},
		{"chat", "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"Stream me."}],"stream":true}`, "[DONE]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := ts.Client().Post(ts.URL+tt.path, "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err == nil {
				t.Fatalf("the stream ended cleanly: %s", body)
			}
			if n := bytes.Count(body, []byte("data: ")); n != 3 {
				t.Fatalf("%d events before the cut, want 3: %s", n, body)
			}
			if bytes.Contains(body, []byte(tt.end)) {
				t.Fatalf("a cut stream has its proper end: %s", body)
			}
		})
	}
}

// TestResponseIDsStartWithTheirCreationTime: the mock's ids are made as
// OpenAI's and Azure's are, the creation's Unix time in 8 hex digits and
// the second's fraction in 4 first, so that ids made in order sort in
// order, as the gateway sees from a real backend.
func TestResponseIDsStartWithTheirCreationTime(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	var prev string
	for i := range 3 {
		resp, body := post(t, ts, "/v1/responses", `{"model":"gpt-4o","input":"Tell me about rivers."}`)
		if resp.StatusCode != 200 {
			t.Fatalf("create: %d %s", resp.StatusCode, body)
		}
		var got struct {
			ID        string `json:"id"`
			CreatedAt int64  `json:"created_at"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		hexPart, ok := strings.CutPrefix(got.ID, "resp_")
		if !ok || len(hexPart) != 32 || strings.Trim(hexPart, "0123456789abcdef") != "" {
			t.Fatalf("id %q is not resp_ and 32 hex digits", got.ID)
		}
		if want := fmt.Sprintf("%08x", got.CreatedAt); hexPart[:8] != want {
			t.Fatalf("id %q does not start with created_at %d (%s)", got.ID, got.CreatedAt, want)
		}
		if i > 0 && got.ID[:17] < prev[:17] { // seconds and their fraction
			t.Fatalf("id %q made after %q sorts before it", got.ID, prev)
		}
		prev = got.ID
	}
}

package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/mock"
	"github.com/llmgate/llmgate/internal/tokens"
)

// mockCounter is the token counter of every test gateway and mock, loaded
// once per test binary: loading its tables takes seconds (over ten under the
// race detector on a busy machine), which must not read as a backend timing
// out in each test.
var mockCounter = sync.OnceValue(func() *tokens.Counter {
	c := tokens.NewCounter()
	c.Count("gpt-4o", "warm up")
	c.Count("gpt-4", "warm up")
	return c
})

// mockBackends starts two real mock upstreams, east and west, each with
// its own store of responses.
func mockBackends(t *testing.T) (east, west *httptest.Server) {
	t.Helper()
	east = httptest.NewServer(mock.New(mock.Options{Name: "east", APIKey: "k-east", Counter: mockCounter()}))
	west = httptest.NewServer(mock.New(mock.Options{Name: "west", APIKey: "k-west", Counter: mockCounter()}))
	t.Cleanup(east.Close)
	t.Cleanup(west.Close)
	return east, west
}

// responsesGateway routes gpt-4o to east and west in one priority group
// (so consecutive requests alternate), with the given kinds.
func responsesGateway(t *testing.T, eastBackend, westBackend config.Backend, mutate ...func(*setup)) *gateway {
	t.Helper()
	eastBackend.Name, westBackend.Name = "east", "west"
	s := setup{
		backends: []config.Backend{eastBackend, westBackend},
		routes:   map[string]config.Route{"gpt-4o": {Pool: [][]string{{"east", "west"}}}},
	}
	for _, m := range mutate {
		m(&s)
	}
	inner := s.mutate
	s.mutate = func(c *config.Config) {
		c.Upstream.ResponseHeaderTimeout = 20 * time.Second // a loaded machine is not a dead backend
		c.Upstream.Timeout = 30 * time.Second
		if inner != nil {
			inner(c)
		}
	}
	return newGateway(t, s)
}

type respBody struct {
	ID     string `json:"id"`
	Object string `json:"object"`
	Status string `json:"status"`
	Output []struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	} `json:"output"`
	Usage *struct {
		InputTokens  int64 `json:"input_tokens"`
		OutputTokens int64 `json:"output_tokens"`
	} `json:"usage"`
}

func (r respBody) text() string {
	var sb strings.Builder
	for _, o := range r.Output {
		for _, c := range o.Content {
			sb.WriteString(c.Text)
		}
	}
	return sb.String()
}

// streamResponses posts a streaming create and returns the event names,
// the terminal event's response, the text of the deltas and the trailer.
func streamResponses(t *testing.T, url, key, body string) (names []string, final respBody, text string, h http.Header) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	var sb strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			names = append(names, v)
		}
		if v, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var ev struct {
				Type     string   `json:"type"`
				Delta    string   `json:"delta"`
				Response respBody `json:"response"`
			}
			if err := json.Unmarshal([]byte(v), &ev); err != nil {
				t.Fatalf("event data is not JSON: %s", v)
			}
			if ev.Type == "response.output_text.delta" {
				sb.WriteString(ev.Delta)
			}
			if ev.Type == "response.completed" || ev.Type == "response.incomplete" {
				final = ev.Response
			}
		}
	}
	h = resp.Header.Clone()
	for k, v := range resp.Trailer {
		h[k] = v
	}
	return names, final, sb.String(), h
}

// TestResponsesEveryRoute: create (streamed and not) and every follow-up,
// in the three client styles, against openai, azure deployments and azure
// v1 backends.
func TestResponsesEveryRoute(t *testing.T) {
	noLeaks(t)
	east, west := mockBackends(t)
	backends := []struct {
		name       string
		east, west config.Backend
	}{
		{"openai", config.Backend{Kind: "openai", URL: east.URL + "/v1", APIKey: "k-east"}, config.Backend{Kind: "openai", URL: west.URL + "/v1", APIKey: "k-west"}},
		{"azure deployments", config.Backend{Kind: "azure", URL: east.URL, APIKey: "k-east"}, config.Backend{Kind: "azure", API: "deployments", URL: west.URL, APIKey: "k-west"}},
		{"azure v1", config.Backend{Kind: "azure", API: "v1", URL: east.URL, APIKey: "k-east"}, config.Backend{Kind: "azure", API: "v1", URL: west.URL, APIKey: "k-west"}},
	}
	styles := []struct{ name, create, base, query string }{
		{"openai", "/v1/responses", "/v1/responses/", ""},
		{"azure v1", "/openai/v1/responses", "/openai/v1/responses/", ""},
		{"azure preview", "/openai/responses?api-version=2025-04-01-preview", "/openai/responses/", "?api-version=2025-04-01-preview"},
	}
	for _, bk := range backends {
		g := responsesGateway(t, bk.east, bk.west)
		for _, st := range styles {
			t.Run(bk.name+"/"+st.name, func(t *testing.T) {
				a := do(t, "POST", g.data.URL+st.create, keyA, `{"model":"gpt-4o","input":"Name a river."}`)
				var r respBody
				if a.status != 200 || json.Unmarshal(a.body, &r) != nil || r.Object != "response" || r.Usage == nil || r.text() == "" {
					t.Fatalf("create: %d %s", a.status, a.body)
				}
				holder := a.header.Get("x-llmgate-backend")
				if holder == "" || a.header.Get("x-llmgate-tokens-consumed") != itoa(r.Usage.InputTokens+r.Usage.OutputTokens) {
					t.Fatalf("headers: %v", a.header)
				}
				names, final, text, h := streamResponses(t, g.data.URL+st.create, keyA, `{"model":"gpt-4o","input":"Name a lake.","stream":true}`)
				if len(names) < 5 || names[0] != "response.created" || names[len(names)-1] != "response.completed" || final.text() != text || text == "" {
					t.Fatalf("stream: %v final %q deltas %q", names, final.text(), text)
				}
				if h.Get("x-llmgate-tokens-consumed") != itoa(final.Usage.InputTokens+final.Usage.OutputTokens) {
					t.Errorf("stream charged %q, usage %+v", h.Get("x-llmgate-tokens-consumed"), final.Usage)
				}
				// Follow-ups reach the backend holding each response (the
				// two backends alternate; each mock knows only its own).
				for _, id := range []string{r.ID, final.ID} {
					a = do(t, "GET", g.data.URL+st.base+id+st.query, keyA, "")
					if a.status != 200 || !bytes.Contains(a.body, []byte(id)) {
						t.Fatalf("GET %s: %d %s", id, a.status, a.body)
					}
					a = do(t, "GET", g.data.URL+st.base+id+"/input_items"+st.query, keyA, "")
					if a.status != 200 || !bytes.Contains(a.body, []byte(`"object":"list"`)) {
						t.Fatalf("input_items: %d %s", a.status, a.body)
					}
					a = do(t, "POST", g.data.URL+st.create, keyA, `{"model":"gpt-4o","previous_response_id":"`+id+`","input":"And another?"}`)
					if a.status != 200 {
						t.Fatalf("continuing %s: %d %s", id, a.status, a.body)
					}
				}
				if a := do(t, "POST", g.data.URL+st.base+r.ID+"/cancel"+st.query, keyA, ""); a.status != 400 {
					t.Errorf("cancelling a finished foreground response: %d %s (the backend's 400)", a.status, a.body)
				}
				if a := do(t, "DELETE", g.data.URL+st.base+r.ID+st.query, keyA, ""); a.status != 200 || a.header.Get("x-llmgate-backend") != holder {
					t.Fatalf("DELETE: %d %v %s", a.status, a.header.Get("x-llmgate-backend"), a.body)
				}
				if a := do(t, "GET", g.data.URL+st.base+r.ID+st.query, keyA, ""); a.status != 404 {
					t.Errorf("GET after DELETE: %d", a.status)
				}
			})
		}
	}
}

// TestResponsesBelongToTheirConsumer: another consumer's id is a 404 on
// every route, as if it did not exist, and changes nothing.
func TestResponsesBelongToTheirConsumer(t *testing.T) {
	east, west := mockBackends(t)
	g := responsesGateway(t, config.Backend{Kind: "openai", URL: east.URL + "/v1", APIKey: "k-east"}, config.Backend{Kind: "openai", URL: west.URL + "/v1", APIKey: "k-west"})
	a := do(t, "POST", g.data.URL+"/v1/responses", keyA, `{"model":"gpt-4o","input":"mine"}`)
	var r respBody
	_ = json.Unmarshal(a.body, &r)
	if a.status != 200 || r.ID == "" {
		t.Fatalf("create: %d %s", a.status, a.body)
	}
	tests := []struct{ name, method, path, body string }{
		{"get", "GET", "/v1/responses/" + r.ID, ""},
		{"input items", "GET", "/v1/responses/" + r.ID + "/input_items", ""},
		{"cancel", "POST", "/v1/responses/" + r.ID + "/cancel", ""},
		{"delete", "DELETE", "/v1/responses/" + r.ID, ""},
		{"previous_response_id", "POST", "/v1/responses", `{"model":"gpt-4o","previous_response_id":"` + r.ID + `","input":"x"}`},
		{"unknown id", "GET", "/v1/responses/resp_nobody", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, tc.method, g.data.URL+tc.path, keyB, tc.body)
			if a.status != 404 || a.errorCode(t) != "not_found" {
				t.Fatalf("%d %s", a.status, a.body)
			}
		})
	}
	if a := do(t, "GET", g.data.URL+"/v1/responses/"+r.ID, keyA, ""); a.status != 200 {
		t.Fatalf("the owner lost its response: %d %s", a.status, a.body)
	}
}

// TestResponsesSettleAndCache: the reservation settles to the usage; a
// stateless request is answered from the cache (as JSON and as a
// well-formed stream), a stateful one never.
func TestResponsesSettleAndCache(t *testing.T) {
	east, west := mockBackends(t)
	g := responsesGateway(t, config.Backend{Kind: "openai", URL: east.URL + "/v1", APIKey: "k-east"}, config.Backend{Kind: "azure", API: "v1", URL: west.URL, APIKey: "k-west"},
		func(s *setup) {
			s.limits, s.cache = true, true
			s.mutate = func(c *config.Config) { c.Consumers[0].TPM = 100000 }
		})
	url := g.data.URL + "/v1/responses"
	body := `{"model":"gpt-4o","input":"What is the tallest mountain?"}`
	a := do(t, "POST", url, keyA, body)
	var r respBody
	_ = json.Unmarshal(a.body, &r)
	if a.status != 200 || a.header.Get("x-llmgate-cache") != "miss" || r.Usage == nil {
		t.Fatalf("first: %d %v %s", a.status, a.header.Get("x-llmgate-cache"), a.body)
	}
	q := do(t, "GET", g.admin.URL+"/admin/quota/team-a", "", "")
	var st struct {
		Used int64 `json:"tpm_used"`
	}
	_ = json.Unmarshal(q.body, &st)
	if st.Used != r.Usage.InputTokens+r.Usage.OutputTokens {
		t.Errorf("charged %d, usage %+v", st.Used, r.Usage)
	}
	hit := do(t, "POST", url, keyA, body)
	var h respBody
	if hit.header.Get("x-llmgate-cache") != "hit" || json.Unmarshal(hit.body, &h) != nil || h.ID == r.ID || h.text() != r.text() {
		t.Fatalf("JSON replay: %v %s", hit.header.Get("x-llmgate-cache"), hit.body)
	}
	names, final, text, hh := streamResponses(t, url, keyA, `{"model":"gpt-4o","input":"What is the tallest mountain?","stream":true}`)
	if hh.Get("x-llmgate-cache") != "hit" || names[0] != "response.created" || names[len(names)-1] != "response.completed" || text != r.text() || final.ID == r.ID || final.ID == h.ID {
		t.Fatalf("stream replay: %v %v %q", hh.Get("x-llmgate-cache"), names, text)
	}
	// A streamed answer is stored too, and serves a JSON client.
	streamResponses(t, url, keyA, `{"model":"gpt-4o","input":"Name a desert.","stream":true}`)
	if a := do(t, "POST", url, keyA, `{"model":"gpt-4o","input":"Name a desert."}`); a.header.Get("x-llmgate-cache") != "hit" {
		t.Errorf("a streamed answer was not stored: %v", a.header.Get("x-llmgate-cache"))
	}
	for _, stateful := range []string{
		`{"model":"gpt-4o","input":"What is the tallest mountain?","previous_response_id":"` + r.ID + `"}`,
		`{"model":"gpt-4o","input":"What is the tallest mountain?","background":true}`,
	} {
		if a := do(t, "POST", url, keyA, stateful); a.status != 200 || a.header.Get("x-llmgate-cache") != "bypass" {
			t.Errorf("stateful %s: %d %v %s", stateful, a.status, a.header.Get("x-llmgate-cache"), a.body)
		}
	}
	// A chat request with the same text is not answered by a Responses entry.
	if a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, `{"model":"gpt-4o","messages":[{"role":"user","content":"What is the tallest mountain?"}]}`); a.header.Get("x-llmgate-cache") != "miss" {
		t.Errorf("chat got %v", a.header.Get("x-llmgate-cache"))
	}
}

// TestAzureV1ChatAndModels: the Azure v1 surface for chat, embeddings and
// the model listing.
func TestAzureV1ChatAndModels(t *testing.T) {
	east, west := mockBackends(t)
	g := responsesGateway(t, config.Backend{Kind: "azure", API: "v1", URL: east.URL, APIKey: "k-east"}, config.Backend{Kind: "azure", URL: west.URL, APIKey: "k-west"})
	for _, path := range []string{"/openai/v1/chat/completions", "/openai/v1/chat/completions?api-version=preview"} {
		for range 2 { // both backends
			a := do(t, "POST", g.data.URL+path, keyA, chatBody)
			if a.status != 200 || !bytes.Contains(a.body, []byte(`"chat.completion"`)) {
				t.Fatalf("%s: %d %s", path, a.status, a.body)
			}
		}
	}
	for _, path := range []string{"/openai/v1/models", "/openai/models?api-version=2024-10-21"} {
		a := do(t, "GET", g.data.URL+path, keyA, "")
		if a.status != 200 || !bytes.Contains(a.body, []byte(`"id":"gpt-4o"`)) {
			t.Fatalf("%s: %d %s", path, a.status, a.body)
		}
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestResponsesStreamBrokenOff: a Responses stream the backend breaks off
// ends with the API's typed error event (event: error, type "error", the
// next sequence_number), never with chat's untyped error data or a terminal
// event; it is charged what was streamed and not cached, and the node keeps
// serving.
func TestResponsesStreamBrokenOff(t *testing.T) {
	noLeaks(t)
	const cutAfter = 5
	cut := httptest.NewServer(mock.New(mock.Options{Name: "cut", Counter: mockCounter(), CutStreamsAfter: cutAfter}))
	t.Cleanup(cut.Close)
	g := newGateway(t, setup{
		backends: []config.Backend{{Name: "cut", Kind: "openai", URL: cut.URL + "/v1"}},
		routes:   map[string]config.Route{"gpt-4o": {Pool: [][]string{{"cut"}}}},
		limits:   true, cache: true,
		mutate: func(c *config.Config) { c.Consumers[0].TPM = 100000 },
	})
	body := `{"model":"gpt-4o","input":"Tell me a long story.","stream":true}`
	for round := range 2 {
		req, _ := http.NewRequest("POST", g.data.URL+"/v1/responses", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+keyA)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("round %d: %d %v %s", round, resp.StatusCode, err, raw)
		}
		if c := resp.Header.Get("x-llmgate-cache"); c != "miss" {
			t.Fatalf("round %d: a broken stream was cached (x-llmgate-cache %q)", round, c)
		}
		events := strings.Split(strings.TrimSpace(string(raw)), "\n\n")
		if len(events) != cutAfter+1 {
			t.Fatalf("round %d: %d events, want the %d relayed and one error: %s", round, len(events), cutAfter, raw)
		}
		last := events[len(events)-1]
		name, data, ok := strings.Cut(last, "\n")
		if !ok || name != "event: error" || !strings.HasPrefix(data, "data: ") {
			t.Fatalf("round %d: the last event is not a typed error event: %q", round, last)
		}
		var ev struct {
			Type    string  `json:"type"`
			Code    string  `json:"code"`
			Message string  `json:"message"`
			Param   *string `json:"param"`
			Seq     *int    `json:"sequence_number"`
			Error   any     `json:"error"`
		}
		if err := json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &ev); err != nil {
			t.Fatalf("round %d: error event data: %v: %s", round, err, data)
		}
		if ev.Type != "error" || ev.Code != "stream_interrupted" || ev.Message == "" || ev.Seq == nil || *ev.Seq != cutAfter || ev.Error != nil {
			t.Fatalf("round %d: error event %s, want type error, code stream_interrupted, sequence_number %d", round, data, cutAfter)
		}
		if strings.Contains(string(raw), "response.completed") {
			t.Fatalf("round %d: a terminal event after the break: %s", round, raw)
		}
		if tr := resp.Trailer.Get("x-llmgate-tokens-consumed"); tr == "" || tr == "0" {
			t.Fatalf("round %d: a broken stream is charged what it streamed, trailer %q", round, tr)
		}
	}
	// The chat stream of the same backend keeps chat's error shape.
	req, _ := http.NewRequest("POST", g.data.URL+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"Tell me a long story."}],"stream":true}`))
	req.Header.Set("api-key", keyA)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(raw), "event: error") || !strings.Contains(string(raw), `data: {"error":{`) {
		t.Fatalf("a broken chat stream ends with data: {\"error\":…}: %s", raw)
	}
}

// TestResponsesReplayIsItsOwnResponse: every replay of a cached answer gets
// a fresh id owned by the consumer it answered. GET and input_items on it
// reach the original (shown under the replay's id), previous_response_id
// continues the original on the backend holding it, DELETE forgets the
// replay alone; another consumer's replay id is a 404, and input_items of
// a replay of another consumer's original is refused.
func TestResponsesReplayIsItsOwnResponse(t *testing.T) {
	noLeaks(t)
	east, west := mockBackends(t)
	g := responsesGateway(t, config.Backend{Kind: "openai", URL: east.URL + "/v1", APIKey: "k-east"}, config.Backend{Kind: "azure", API: "v1", URL: west.URL, APIKey: "k-west"},
		func(s *setup) {
			s.cache = true
			s.mutate = func(c *config.Config) { c.Cache.Shared = true }
		})
	url := g.data.URL + "/v1/responses"
	body := `{"model":"gpt-4o","input":"Which river is the longest?"}`
	read := func(a answer) respBody {
		t.Helper()
		var r respBody
		if a.status != 200 || json.Unmarshal(a.body, &r) != nil || !strings.HasPrefix(r.ID, "resp_") {
			t.Fatalf("%d %s", a.status, a.body)
		}
		return r
	}
	first := do(t, "POST", url, keyA, body)
	orig := read(first)
	holder := first.header.Get("x-llmgate-backend")
	replayA := do(t, "POST", url, keyA, body)
	replayB := do(t, "POST", url, keyB, body)
	ra, rb := read(replayA), read(replayB)
	if replayA.header.Get("x-llmgate-cache") != "hit" || replayB.header.Get("x-llmgate-cache") != "hit" {
		t.Fatalf("not replays: %v %v", replayA.header.Get("x-llmgate-cache"), replayB.header.Get("x-llmgate-cache"))
	}
	if ra.ID == orig.ID || rb.ID == orig.ID || ra.ID == rb.ID || ra.text() != orig.text() || rb.text() != orig.text() {
		t.Fatalf("replays must have fresh ids and the same answer: %s %s %s", orig.ID, ra.ID, rb.ID)
	}
	if strings.Contains(string(replayB.body), orig.ID) {
		t.Fatalf("the original id shows in a replay: %s", replayB.body)
	}
	// GET on a replay: the original's object under the replay's id.
	if got := read(do(t, "GET", url+"/"+rb.ID, keyB, "")); got.ID != rb.ID || got.text() != orig.text() {
		t.Fatalf("GET replay: %+v", got)
	}
	for _, c := range []struct{ id, key string }{{rb.ID, keyA}, {ra.ID, keyB}, {orig.ID, keyB}} {
		if a := do(t, "GET", url+"/"+c.id, c.key, ""); a.status != 404 || a.errorCode(t) != "not_found" {
			t.Errorf("GET %s with another consumer's key: %d %s", c.id, a.status, a.body)
		}
	}
	// input_items: the creator's own replay reaches the original's input;
	// another consumer's replay does not show the creator's prompt.
	if a := do(t, "GET", url+"/"+ra.ID+"/input_items", keyA, ""); a.status != 200 || !strings.Contains(string(a.body), "Which river is the longest?") {
		t.Errorf("input_items of the creator's replay: %d %s", a.status, a.body)
	}
	if a := do(t, "GET", url+"/"+rb.ID+"/input_items", keyB, ""); a.status != 404 || strings.Contains(string(a.body), "Which river") {
		t.Errorf("input_items of another consumer's original: %d %s", a.status, a.body)
	}
	// previous_response_id of a replay continues the original where it is held.
	for range 2 { // the route alternates its backends: both turns must reach the holder
		cont := do(t, "POST", url, keyB, `{"model":"gpt-4o","input":"And the second?","previous_response_id":"`+rb.ID+`"}`)
		if c := read(cont); cont.header.Get("x-llmgate-backend") != holder || c.ID == rb.ID {
			t.Fatalf("continuing a replay: %s %s", cont.header.Get("x-llmgate-backend"), cont.body)
		}
	}
	if a := do(t, "POST", url, keyA, `{"model":"gpt-4o","input":"And the second?","previous_response_id":"`+rb.ID+`"}`); a.status != 404 {
		t.Errorf("another consumer continued a replay: %d %s", a.status, a.body)
	}
	// A stream replay: one fresh id throughout, followed up like the others.
	_, final, _, hh := streamResponses(t, url, keyB, `{"model":"gpt-4o","input":"Which river is the longest?","stream":true}`)
	if hh.Get("x-llmgate-cache") != "hit" || final.ID == orig.ID || final.ID == rb.ID {
		t.Fatalf("stream replay id %s", final.ID)
	}
	if got := read(do(t, "GET", url+"/"+final.ID, keyB, "")); got.ID != final.ID {
		t.Fatalf("GET stream replay: %+v", got)
	}
	// DELETE forgets the replay; the original and the other replays stay.
	del := do(t, "DELETE", url+"/"+rb.ID, keyB, "")
	var d struct {
		ID      string `json:"id"`
		Deleted bool   `json:"deleted"`
	}
	if del.status != 200 || json.Unmarshal(del.body, &d) != nil || d.ID != rb.ID || !d.Deleted {
		t.Fatalf("DELETE replay: %d %s", del.status, del.body)
	}
	if a := do(t, "GET", url+"/"+rb.ID, keyB, ""); a.status != 404 {
		t.Errorf("GET a deleted replay: %d", a.status)
	}
	if got := read(do(t, "GET", url+"/"+orig.ID, keyA, "")); got.ID != orig.ID {
		t.Errorf("the original after its replay's deletion: %+v", got)
	}
	if got := read(do(t, "GET", url+"/"+ra.ID, keyA, "")); got.ID != ra.ID {
		t.Errorf("another replay after one's deletion: %+v", got)
	}
}

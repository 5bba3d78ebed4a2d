package api

import (
	"encoding/json"
	"net/http"
	"testing"
)

// caseSensitive answers like a backend that reads keys exactly and lets the
// last of repeated keys win: it reports what it understood.
func caseSensitive(w http.ResponseWriter, r *http.Request) {
	var top map[string]json.RawMessage
	_ = json.NewDecoder(r.Body).Decode(&top)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":1,"total_tokens":9}}`))
}

func TestAmbiguousBodiesNeverReachTheBackend(t *testing.T) {
	noLeaks(t)
	up := newUpstream(t, caseSensitive)
	g := limited(t, up, 100000, 0)
	const msgs = `"messages":[{"role":"user","content":"hello"}]`
	for name, body := range map[string]string{
		"stream and STREAM":        `{"model":"gpt-4o",` + msgs + `,"stream":true,"STREAM":false}`,
		"MAX_TOKENS beside":        `{"model":"gpt-4o",` + msgs + `,"max_tokens":4000,"MAX_TOKENS":1}`,
		"MODEL naming no route":    `{"model":"gpt-4o","MODEL":"x",` + msgs + `}`,
		"repeated max_tokens":      `{"model":"gpt-4o",` + msgs + `,"max_tokens":4000,"max_tokens":1}`,
		"repeated model, no route": `{"model":"x","model":"gpt-4o",` + msgs + `}`,
	} {
		t.Run(name, func(t *testing.T) {
			before := up.calls.Load()
			a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, body)
			if a.status != 400 || a.errorCode(t) != "invalid_request_error" {
				t.Fatalf("%d %s", a.status, a.body)
			}
			if up.calls.Load() != before {
				t.Fatal("an ambiguous body reached the backend")
			}
		})
	}
}

func TestReservationCoversTheLargerCompletionLimit(t *testing.T) {
	noLeaks(t)
	up := newUpstream(t, caseSensitive)
	g := limited(t, up, 2000, 0)
	// max_completion_tokens alone would fit 2000; max_tokens, which some
	// backends honour instead, does not.
	a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA,
		`{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}],"max_completion_tokens":1,"max_tokens":4000}`)
	if a.status != http.StatusTooManyRequests || up.calls.Load() != 0 {
		t.Fatalf("%d %s (backend calls %d)", a.status, a.body, up.calls.Load())
	}
}

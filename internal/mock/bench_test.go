package mock

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The request of `llmgate bench overhead` as chat completions (tpm) and as
// the Responses API (responses): the mock answers both in the benchmark, on
// the cores the node and the load generator use.
const (
	benchSystem        = "You are a careful assistant for an engineering team. Answer in plain English, cite the relevant section of the document when you can, and say so when the document does not answer the question. Keep answers under five sentences."
	benchUser          = "Our deployment runs three gateway nodes behind a load balancer, each with 2 vCPUs and 4 GiB of memory. Last week the p99 latency rose from 180 ms to 1.2 s during the nightly batch (about 40,000 requests between 01:00 and 02:00 UTC), while CPU stayed below 60%. The backend's x-ratelimit-remaining-tokens header dropped to zero several times. Which of these is the most likely cause, and what should we change first: the TPM limits of the batch consumer, the priority groups of the route, or the size of the nodes?"
	benchChatBody      = `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"` + benchSystem + `"},{"role":"user","content":"` + benchUser + `"}],"max_tokens":16}`
	benchResponsesBody = `{"model":"gpt-4o-mini","instructions":"` + benchSystem + `","input":"` + benchUser + `","max_output_tokens":16}`
)

// BenchmarkAnswer is the mock's own cost of answering the overhead
// benchmark's request, as chat completions and as the Responses API (which
// also keeps the response for follow-ups).
func BenchmarkAnswer(b *testing.B) {
	s := New(Options{})
	for _, c := range []struct{ name, path, body string }{
		{"chat", "/v1/chat/completions", benchChatBody},
		{"responses", "/v1/responses", benchResponsesBody},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, c.path, bytes.NewReader([]byte(c.body)))
				req.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				s.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}

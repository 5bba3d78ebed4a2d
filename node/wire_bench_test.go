package node

import (
	"testing"

	"github.com/llmgate/llmgate/internal/openai"
)

// The request and answers of `llmgate bench overhead` (tpm and responses
// features) and of the mock upstream, for the stages the two wire formats
// do differently.
const (
	benchChatBody      = `{"model":"gpt-4o","messages":[{"role":"system","content":"You are a concise assistant."},{"role":"user","content":"Say hello in five words."}],"max_tokens":16}`
	benchResponsesBody = `{"model":"gpt-4o","instructions":"You are a concise assistant.","input":"Say hello in five words.","max_output_tokens":16}`
	benchChatAnswer    = `{"id":"chatcmpl-UPEZGICTD3SCHFN7MNH4RGHCFW","object":"chat.completion","created":1796584302,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Better top had have last few page night form means. Four then almost an slow"},"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":23,"completion_tokens":16,"total_tokens":39}}`
	benchResponse      = `{"id":"resp_BXIHL2PG72GNQT3VRZ3C3BLSY5","object":"response","created_at":1796584302,"status":"incomplete","background":false,"error":null,"incomplete_details":{"reason":"max_output_tokens"},"instructions":"You are a concise assistant.","max_output_tokens":16,"model":"gpt-4o-mini","output":[{"id":"msg_6IS7GWQTIH7NZW2D4WMTTGBEBN","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Better top had have last few page night form means. Four then almost an slow","annotations":[]}]}],"parallel_tool_calls":true,"previous_response_id":null,"store":true,"temperature":1,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1,"truncation":"disabled","usage":{"input_tokens":23,"input_tokens_details":{"cached_tokens":0},"output_tokens":16,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":39},"metadata":{}}`
)

func benchCalls(tb testing.TB) map[string]*Call {
	tb.Helper()
	chat, e := openai.ParseChat([]byte(benchChatBody))
	if e != nil {
		tb.Fatal(e)
	}
	resp, e := openai.ParseResponses([]byte(benchResponsesBody))
	if e != nil {
		tb.Fatal(e)
	}
	return map[string]*Call{
		"chat":      {Op: openai.OpChat, Route: "gpt-4o", Chat: chat, Body: []byte(benchChatBody)},
		"responses": {Op: openai.OpResponses, Route: "gpt-4o", Responses: resp, Body: []byte(benchResponsesBody)},
	}
}

// BenchmarkWireParse is the front end's parse of the request.
func BenchmarkWireParse(b *testing.B) {
	b.Run("chat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = openai.ParseChat([]byte(benchChatBody))
		}
	})
	b.Run("responses", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = openai.ParseResponses([]byte(benchResponsesBody))
		}
	})
}

// BenchmarkWireEstimate is the admission's estimate of the same request.
func BenchmarkWireEstimate(b *testing.B) {
	g := admitGateway(b)
	for _, name := range []string{"chat", "responses"} {
		call := benchCalls(b)[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				g.estimate(call)
			}
		})
	}
}

// BenchmarkWireReply reads the mock's whole answer to the same request.
func BenchmarkWireReply(b *testing.B) {
	answers := map[string]string{"chat": benchChatAnswer, "responses": benchResponse}
	for _, name := range []string{"chat", "responses"} {
		call, body := benchCalls(b)[name], []byte(answers[name])
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r := newReply(call, 200, body); !r.ok || r.id == "" {
					b.Fatal("not read")
				}
			}
		})
	}
}

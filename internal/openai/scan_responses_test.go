package openai

import (
	"strings"
	"testing"
)

// scanResponsesCases are bodies scanResponses must read as the decoder
// does, or leave to it.
var scanResponsesCases = []struct {
	name    string
	body    string
	scanned bool // scanResponses reads it itself
}{
	{"typical request", `{"model":"gpt-4o","instructions":"Be brief.","input":"Say hello.","max_output_tokens":16}`, true},
	{"every field", `{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"a"}]},{"type":"function_call_output","call_id":"c","output":"x"}],"instructions":"i","tools":[{"type":"function","name":"f"}],"stream":true,"max_output_tokens":4000,"temperature":0.5,"previous_response_id":"resp_1","conversation":{"id":"conv_1"},"background":false,"store":false}`, true},
	{"whitespace everywhere", " {\n \"model\" : \"m\" ,\t\"input\" : [ { \"role\" : \"user\" , \"content\" : \"x\" } ] , \"tools\" :  null  } \r\n", true},
	{"escapes in values", `{"model":"a\u00e9\n","instructions":"b\"c","input":"line\nline \ud83d\ude00"}`, true},
	{"unknown keys and values of every kind", `{"model":"m","input":"x","metadata":{"a":"b"},"text":{"format":{"type":"json_object"}},"reasoning":null,"x":[true,false,null,[],{}],"seed":-0}`, true},
	{"nulls for optional fields", `{"model":"m","input":"x","instructions":null,"max_output_tokens":null,"temperature":null,"store":null,"conversation":null}`, true},
	{"no input", `{"model":"m","previous_response_id":"resp_1"}`, true},
	{"repeated key", `{"model":"m","input":"x","stream":true,"stream":false}`, false},
	{"case variant of a field", `{"model":"m","input":"x","Store":true}`, false},
	{"keys differing in case in an item", `{"model":"m","input":[{"role":"user","Role":"system","content":"x"}]}`, false},
	{"escaped key", `{"model":"m","input":"x","\u006dodel":"n"}`, false},
	{"null model", `{"model":null,"input":"x"}`, false},
	{"null stream", `{"model":"m","input":"x","stream":null}`, false},
	{"fractional max_output_tokens", `{"model":"m","input":"x","max_output_tokens":16.0}`, false},
	{"overflowing temperature", `{"model":"m","input":"x","temperature":1e999}`, false},
	{"string store", `{"model":"m","input":"x","store":"yes"}`, false},
	{"number instructions", `{"model":"m","input":"x","instructions":1}`, false},
	{"trailing comma", `{"model":"m","input":"x",}`, false},
	{"bad escape", `{"model":"m","input":"\x"}`, false},
	{"text after the object", `{"model":"m","input":"x"} {}`, false},
	{"unclosed object", `{"model":"m","input":"x"`, false},
	{"deep nesting", `{"model":"m","input":"x","x":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`, false},
}

func TestScanResponsesMatchesDecoding(t *testing.T) {
	for _, tc := range scanResponsesCases {
		t.Run(tc.name, func(t *testing.T) {
			_, scanned := scanResponses([]byte(tc.body))
			if scanned != tc.scanned {
				t.Errorf("scanned = %v, want %v", scanned, tc.scanned)
			}
			sameResponsesAsDecoding(t, []byte(tc.body))
		})
	}
}

// FuzzScanResponsesMatchesDecoding checks that the one-pass reader of
// Responses requests agrees with encoding/json and checkKeys on any body:
// the same request (every field, raw values byte for byte, the messages
// made of them), or the same error.
func FuzzScanResponsesMatchesDecoding(f *testing.F) {
	for _, tc := range scanResponsesCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sameResponsesAsDecoding(t, body)
	})
}

// sameResponsesAsDecoding fails unless ParseResponses gives for body
// exactly what the decoder and checkKeys alone give.
func sameResponsesAsDecoding(t *testing.T, body []byte) {
	t.Helper()
	sameScanAsDecoding(t, body, parseResponses)
}

// BenchmarkParseResponses is the front end's parse of the overhead
// benchmark's request as the Responses API (BenchmarkParseChat's, the
// system prompt as instructions), by ParseResponses and by the decoder it
// replaces.
func BenchmarkParseResponses(b *testing.B) {
	body := []byte(`{"model":"gpt-4o-mini","instructions":"You are a careful assistant for an engineering team. Answer in plain English, cite the relevant section of the document when you can, and say so when the document does not answer the question. Keep answers under five sentences.","input":"Our deployment runs three gateway nodes behind a load balancer, each with 2 vCPUs and 4 GiB of memory. Last week the p99 latency rose from 180 ms to 1.2 s during the nightly batch (about 40,000 requests between 01:00 and 02:00 UTC), while CPU stayed below 60%. The backend's x-ratelimit-remaining-tokens header dropped to zero several times. Which of these is the most likely cause, and what should we change first: the TPM limits of the batch consumer, the priority groups of the route, or the size of the nodes?","max_output_tokens":16}`)
	for _, tc := range []struct {
		name string
		scan bool
	}{{"scan", true}, {"decoder", false}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, e := parseResponses(body, tc.scan); e != nil {
					b.Fatal(e)
				}
			}
		})
	}
}

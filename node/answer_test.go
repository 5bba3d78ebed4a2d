package node

import (
	"encoding/json"
	"reflect"
	"testing"
)

// readChatByDecoding is how answers were read before readChat: the body
// decoded into a completion, and again for its id.
func readChatByDecoding(body []byte) (id string, u *usage, storable bool, text string) {
	var head struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &head)
	var c completion
	if json.Unmarshal(body, &c) != nil {
		return head.ID, nil, false, ""
	}
	return head.ID, c.Usage, c.cacheable(body), c.text()
}

const azureAnswer = `{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"}},` +
	`"finish_reason":"stop","index":0,"logprobs":null,"message":{"annotations":[],"content":"The batch consumer's TPM limit.\nLower it first.","refusal":null,"role":"assistant"}}],` +
	`"created":1733400000,"id":"chatcmpl-AbC123","model":"gpt-4o-mini-2024-07-18","object":"chat.completion",` +
	`"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}],` +
	`"system_fingerprint":"fp_1","usage":{"completion_tokens":9,"completion_tokens_details":{"reasoning_tokens":0},"prompt_tokens":185,"prompt_tokens_details":{"cached_tokens":128},"total_tokens":194}}`

var readChatSeeds = []string{
	azureAnswer,
	`{"id":"a","choices":[{"finish_reason":"stop","message":{"content":"hi"}},{"finish_reason":"length","message":{"content":" there"}}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`,
	`{"id":"a","choices":[{"finish_reason":"content_filter","message":{"content":null}}],"usage":null}`,
	`{"id":null,"choices":null}`,
	`{"choices":[null,{"finish_reason":null,"message":null}]}`,
	`{"ID":"upper","Usage":{"Prompt_Tokens":4},"CHOICES":[]}`,
	`{"uſage":{"prompt_toKens":4}}`,
	`{"id":"a","id":"b"}`,
	`{"usage":{"prompt_tokens":1},"usage":{"completion_tokens":2}}`,
	`{"usage":{"prompt_tokens":1.0}}`,
	`{"usage":{"prompt_tokens":1e2}}`,
	`{"usage":{"prompt_tokens":99999999999999999999}}`,
	`{"usage":{"prompt_tokens":-5,"total_tokens":"7"}}`,
	`{"usage":[1,2]}`,
	`{"id":7,"usage":{"prompt_tokens":3}}`,
	`{"i\u0064":"escaped key","choices":[{"finish_reason":"stop","message":{"content":"x"}}]}`,
	`{"id":"caf\u00e9 \ud800","choices":[{"finish_reason":"st\u006fp","message":{"content":"a\"b\\c\u2028"}}]}`,
	"{\"id\":\"\xff\xfe\",\"choices\":[{\"finish_reason\":\"stop\",\"message\":{\"content\":\"bad \xc3 utf8\"}}]}",
	`{"choices":[{"finish_reason":"stop","message":{"content":"x"},"content_filter_results":{"violence":{"filtered":true}}}]}`,
	`{"choices":[{"finish_reason":"stop","message":{"content":"x","content":"y"}}]}`,
	`{"choices":[{"message":{"tool_calls":[{"id":"t","function":{"arguments":"{\"a\":[1,{\"b\":\"]}\"}]}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens_details":null,"total_tokens":3}}`,
	`{"usage":{"prompt_tokens_details":{"cached_tokens":2,"audio_tokens":0},"prompt_tokens":3}}`,
	`{"usage":{"prompt_tokens_details":[]}}`,
	`{"object":"list","data":[{"embedding":[0.1,-2e-3,1E+2],"index":0}],"usage":{"prompt_tokens":5,"total_tokens":5}}`,
	` { "id" : "spaced" , "choices" : [ { "finish_reason" : "stop" , "message" : { "content" : "x" } } ] , "usage" : { "prompt_tokens" : 1 } } `,
	`[]`, `"str"`, `null`, `{}`, `{"choices":[1]}`, `{"choices":{"finish_reason":"stop"}}`, `{"choices":[{"finish_reason":1}]}`,
	`{"choices":[{"message":{"content":5}}]}`, `{"usage":{"prompt_tokens":true}}`, `{"usage":{"prompt_tokens":-0}}`,
}

func TestReadChatMatchesDecoding(t *testing.T) {
	for _, body := range readChatSeeds {
		if !json.Valid([]byte(body)) {
			t.Fatalf("seed is not JSON: %s", body)
		}
		checkReadChat(t, []byte(body))
	}
}

func checkReadChat(t *testing.T, body []byte) {
	t.Helper()
	id, u, storable, text := readChat(body)
	wid, wu, wstorable, wtext := readChatByDecoding(body)
	if id != wid || !reflect.DeepEqual(u, wu) || storable != wstorable || text != wtext {
		t.Fatalf("readChat(%s)\n = %q %+v %v %q\nwant %q %+v %v %q", body, id, u, storable, text, wid, wu, wstorable, wtext)
	}
}

func TestReadChatScansTheCommonAnswer(t *testing.T) {
	for _, body := range []string{azureAnswer, readChatSeeds[1], readChatSeeds[2], readChatSeeds[20]} {
		if _, ok := scanChat([]byte(body)); !ok {
			t.Errorf("the scanner gave up on a common answer (a decode per request again): %s", body)
		}
	}
	a, _ := scanChat([]byte(azureAnswer))
	if a.id != "chatcmpl-AbC123" || a.usage == nil || a.usage.Prompt != 185 || a.usage.Total != 194 || a.usage.Details == nil || a.usage.Details.Cached != 128 ||
		!a.cacheable([]byte(azureAnswer)) || a.text != "The batch consumer's TPM limit.\nLower it first." {
		t.Fatalf("scanned %+v (usage %+v)", a, a.usage)
	}
}

func FuzzReadChatMatchesDecoding(f *testing.F) {
	for _, s := range readChatSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			// The scanner is newReply's only check of the common answer.
			if _, ok := scanChat(body); ok {
				t.Fatalf("the scanner read invalid JSON: %q", body)
			}
			return // readChat reads only valid JSON
		}
		checkReadChat(t, body)
	})
}

func BenchmarkReadChat(b *testing.B) {
	body := []byte(azureAnswer)
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			readChat(body)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			readChatByDecoding(body)
		}
	})
}

// TestKeyIsAsDecoding: keyIs matches a plain ASCII key to a field exactly
// when encoding/json does, and the scanners hand an answer with any other
// key (which could fold to a field: "ſ" is an "s") to encoding/json.
func TestKeyIsAsDecoding(t *testing.T) {
	if _, ok := scanResponse([]byte(benchResponse)); !ok {
		t.Fatal("the Responses scanner does not read the common answer")
	}
	if _, ok := scanChat([]byte(benchChatAnswer)); !ok {
		t.Fatal("the chat scanner does not read the common answer")
	}
	for _, key := range []string{"input_tokens", "INPUT_TOKENS", "Input_Tokens", "input_token", "input_tokens_",
		"input_to\u212aens", "ınput_tokens", "input_tokenſ", "ſtatus", "status", "STATUS", "statuſ", "", "id", "ID", "iD", "idd", "ı",
		"input_tokens_details", "\u212aey_of_some_length", "output_tokens_details_\u212a", "ɪnput_tokens"} {
		if !ascii([]byte(key)) {
			k, _ := json.Marshal(key)
			if body := "{" + string(k) + `:"x",` + benchResponse[1:]; func() bool { _, ok := scanResponse([]byte(body)); return ok }() {
				t.Errorf("the Responses scanner read %s", body)
			}
			if body := "{" + string(k) + `:"x",` + benchChatAnswer[1:]; func() bool { _, ok := scanChat([]byte(body)); return ok }() {
				t.Errorf("the chat scanner read %s", body)
			}
			continue
		}
		for _, name := range []string{"input_tokens", "status", "id"} {
			body, _ := json.Marshal(map[string]int{key: 1})
			field := reflect.StructOf([]reflect.StructField{{Name: "F", Type: reflect.TypeFor[int](), Tag: reflect.StructTag(`json:"` + name + `"`)}})
			p := reflect.New(field)
			_ = json.Unmarshal(body, p.Interface())
			want := p.Elem().Field(0).Int() == 1
			if got := keyIs([]byte(key), name); got != want {
				t.Errorf("keyIs(%q, %q) = %v, encoding/json matches: %v", key, name, got, want)
			}
		}
	}
}

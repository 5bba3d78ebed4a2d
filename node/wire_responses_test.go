package node

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// readResponseSeeds are response objects as backends send them and the
// shapes the scanner must hand to encoding/json.
var readResponseSeeds = []string{
	benchResponse,
	`{"id":"resp_1","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"hi"}]}],"usage":{"input_tokens":3,"output_tokens":1,"total_tokens":4}}`,
	`{"id":"resp_2","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"output":[],"usage":null}`,
	`{"id":"resp_3","output":null,"incomplete_details":null}`,
	`{"id":"resp_4","output":[null,{"type":"function_call","content":null}]}`,
	`{"id":"resp_5","output":[{"type":"message","content":[null,{"type":"output_text","text":"a\u00e9\"b"}]}]}`,
	`{"ID":"resp_6","Status":"completed","USAGE":{"Input_Tokens":1}}`,
	`{"id":"resp_7","id":"resp_8"}`,
	`{"id":"resp_9","usage":{"input_tokens":1.5}}`,
	`{"id":"resp_10","usage":{"input_tokens":99999999999999999999}}`,
	`{"id":"resp_11","output":"text"}`,
	`{"id":"resp_12","output":[{"content":[{"text":7}]}]}`,
	`{"\u0069d":"resp_13"}`,
	`{"id":"resp_14","ſtatus":"completed"}`,
	`[]`, `null`, `"resp"`, `{}`,
}

// checkReadResponse fails unless readResponse reads body as decoding it
// into a responseObject does (the scanner, when it reads it, included),
// and unless the scanner takes only valid JSON.
func checkReadResponse(t *testing.T, body []byte) {
	t.Helper()
	var o responseObject
	wantOK := json.Unmarshal(body, &o) == nil
	var want responseAnswer
	if wantOK {
		want = o.answer()
	}
	got, ok := readResponse(body)
	if ok != wantOK || ok && !reflect.DeepEqual(got, want) {
		t.Fatalf("%s\nread    %+v %v\ndecoded %+v %v", body, got, ok, want, wantOK)
	}
	scanned, ok := scanResponse(body)
	if ok && !json.Valid(body) {
		t.Fatalf("the scanner read invalid JSON: %q", body)
	}
	if ok && (!wantOK || !reflect.DeepEqual(scanned, want)) {
		t.Fatalf("%s\nscanned %+v\ndecoded %+v %v", body, scanned, want, wantOK)
	}
}

func TestReadResponseMatchesDecoding(t *testing.T) {
	for _, s := range readResponseSeeds {
		checkReadResponse(t, []byte(s))
	}
	// The common answers are read by the scanner, not handed over.
	for _, s := range readResponseSeeds[:3] {
		if _, ok := scanResponse([]byte(s)); !ok {
			t.Errorf("the scanner handed a common answer to encoding/json: %s", s)
		}
	}
	a, _ := scanResponse([]byte(benchResponse))
	if a.id != "resp_BXIHL2PG72GNQT3VRZ3C3BLSY5" || a.u == nil || *a.u != (usage{Prompt: 23, Completion: 16, Total: 39}) || !a.storable || a.text != "" {
		t.Fatalf("scanned %+v (usage %+v)", a, a.u)
	}
}

// TestReadResponseRefusesInvalidJSON: the scanner is the only check an
// answer gets, so each way to break the common answer must be refused.
func TestReadResponseRefusesInvalidJSON(t *testing.T) {
	valid := `{"id":"resp_1","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"hi","annotations":[]}]}],"metadata":{"k":[1,2.5,true,null]},"usage":{"input_tokens":3,"output_tokens":1,"total_tokens":4}}`
	for _, body := range []string{
		valid[:len(valid)-1],
		valid + "}",
		valid + "\x00",
		strings.Replace(valid, `"id":`, `"id"`, 1),
		strings.Replace(valid, `"hi"`, "\"h\ti\"", 1),
		strings.Replace(valid, `"hi"`, `"h\qi"`, 1),
		strings.Replace(valid, `"total_tokens":4`, `"total_tokens":04`, 1),
		strings.Replace(valid, `"total_tokens":4`, `"total_tokens":-`, 1),
		strings.Replace(valid, `2.5`, `2.`, 1),
		strings.Replace(valid, `true`, `tru`, 1),
		strings.Replace(valid, `null]`, `nul]`, 1),
		strings.Replace(valid, `[1,`, `[1,,`, 1),
		strings.Replace(valid, `"annotations":[]`, `"annotations":[],`, 1),
		strings.Replace(valid, `"status":"completed"`, `"status":nulll`, 1),
		strings.Replace(valid, `{"k"`, `{k`, 1),
		`{"id":"resp_1","metadata":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
	} {
		if json.Valid([]byte(body)) {
			t.Fatalf("case is valid JSON: %q", body)
		}
		if _, ok := readResponse([]byte(body)); ok {
			t.Errorf("read invalid JSON: %q", body)
		}
		if _, ok := scanChat([]byte(body)); ok {
			t.Errorf("the chat scanner read invalid JSON: %q", body)
		}
	}
	for _, body := range []string{
		strings.Replace(azureAnswer, `"finish_reason":"stop"`, `"finish_reason":"stop",`, 1),
		strings.Replace(azureAnswer, `"prompt_tokens":185`, `"prompt_tokens":185.`, 1),
		strings.Replace(azureAnswer, `first."`, "first.\n\"", 1),
		strings.Replace(azureAnswer, `"refusal":null`, `"refusal":nul`, 1),
		strings.Replace(azureAnswer, `}],"created"`, `},],"created"`, 1),
	} {
		if _, ok := scanChat([]byte(body)); ok || json.Valid([]byte(body)) {
			t.Errorf("the chat scanner read invalid JSON: %q", body)
		}
	}
	if _, ok := scanResponse([]byte(valid)); !ok {
		t.Fatal("the valid answer is not scanned")
	}
}

func FuzzReadResponseMatchesDecoding(f *testing.F) {
	for _, s := range readResponseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkReadResponse(t, body)
	})
}

// TestResponsesReplyFilteredIsNotCacheable: the content-filter check, made
// only when the cache asks, still keeps a filtered answer out of it.
func TestResponsesReplyFilteredIsNotCacheable(t *testing.T) {
	call := benchCalls(t)["responses"]
	filtered := strings.Replace(benchResponse, `"metadata":{}`, `"metadata":{},"content_filter_results":{"hate":{"filtered":true,"severity":"high"}}`, 1)
	for _, tc := range []struct {
		name, body string
		want       bool
	}{
		{"clean answer is cacheable", benchResponse, true},
		{"filtered answer is not", filtered, false},
	} {
		r := newReply(call, 200, []byte(tc.body))
		if !r.ok {
			t.Fatalf("%s: not read", tc.name)
		}
		if got := r.cacheable(); got != tc.want {
			t.Errorf("%s: cacheable %v", tc.name, got)
		}
		if got := r.cacheable(); got != tc.want {
			t.Errorf("%s: cacheable %v when asked again", tc.name, got)
		}
	}
}

// TestNewResponseIDStartsWithTheTime: a replay's id is resp_ and 48 hex
// digits, the first 12 the Unix time and the second's fraction (in 65,536ths),
// as OpenAI's are; ids made later sort after (their owner records are
// written in order).
func TestNewResponseIDStartsWithTheTime(t *testing.T) {
	at := time.Unix(1796584302, 0)
	a, b := newResponseID(at), newResponseID(at.Add(time.Second))
	for _, id := range []string{a, b} {
		h, ok := strings.CutPrefix(id, "resp_")
		if !ok || len(h) != 48 || strings.Trim(h, "0123456789abcdef") != "" {
			t.Fatalf("id %q is not resp_ and 48 hex digits", id)
		}
	}
	if a[:13] != "resp_6b15b36e" || b <= a {
		t.Fatalf("ids %q, %q: want resp_6b15b36e… and the later one sorting after", a, b)
	}
	if newResponseID(at) == a {
		t.Fatal("two ids made in the same second are the same")
	}
	// The next 4 hex digits are the second's fraction: ids made a
	// millisecond apart sort in order too.
	if c, d := newResponseID(at.Add(500*time.Millisecond)), newResponseID(at.Add(501*time.Millisecond)); c[:17] != "resp_6b15b36e8000" || d <= c {
		t.Fatalf("ids %q, %q: want resp_6b15b36e8000… and the later one sorting after", c, d)
	}
}

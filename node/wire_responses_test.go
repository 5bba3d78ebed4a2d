package node

import (
	"encoding/json"
	"reflect"
	"testing"
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
// into a responseObject does (the scanner, when it reads it, included).
func checkReadResponse(t *testing.T, body []byte) {
	t.Helper()
	var want responseObject
	wantOK := json.Unmarshal(body, &want) == nil
	got, ok := readResponse(body)
	if ok != wantOK || ok && !reflect.DeepEqual(got, want) {
		t.Fatalf("%s\nread    %+v %v\ndecoded %+v %v", body, got, ok, want, wantOK)
	}
	if scanned, ok := scanResponse(body); ok && (!wantOK || !reflect.DeepEqual(scanned, want)) {
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
}

func FuzzReadResponseMatchesDecoding(f *testing.F) {
	for _, s := range readResponseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkReadResponse(t, body)
	})
}

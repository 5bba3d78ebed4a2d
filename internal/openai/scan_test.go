package openai

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"reflect"
	"strings"
	"testing"
)

// scanCases are bodies scanChat must read as the decoder does, or leave to it.
var scanCases = []struct {
	name    string
	body    string
	scanned bool // scanChat reads it itself
}{
	{"typical request", `{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hello."}],"max_tokens":16}`, true},
	{"every field", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}}],"name":"bob"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":4000,"max_completion_tokens":1,"n":2,"temperature":0.5,"tools":[{"type":"function"}],"response_format":{"type":"json_object"}}`, true},
	{"whitespace everywhere", " {\n \"model\" : \"m\" ,\t\"messages\" : [ { \"role\" : \"user\" , \"content\" : \"x\" } ] , \"tools\" :  null  } \r\n", true},
	{"escapes in values", `{"model":"a\u00e9\n","messages":[{"role":"us\"er","content":"line\nline \ud83d\ude00"}]}`, true},
	{"unknown keys and values of every kind", `{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"1","function":{"name":"f","arguments":"{}"}}]}],"user":"u","logit_bias":{"1":-1.5e3},"seed":-0,"x":[true,false,null,[],{}]}`, true},
	{"nulls for optional fields", `{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":null,"max_tokens":null,"n":null,"temperature":null}`, true},
	{"empty messages", `{"model":"m","messages":[]}`, true},
	{"repeated key", `{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"stream":false}`, false},
	{"case variant of a field", `{"model":"m","messages":[{"role":"user","content":"x"}],"Stream":true}`, false},
	{"keys differing in case in a nested object", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"a":1,"A":2}]}`, false},
	{"escaped key", `{"model":"m","messages":[{"role":"user","content":"x"}],"\u006dodel":"n"}`, false},
	{"non-ASCII key", `{"model":"m","messages":[{"role":"user","content":"x"}],"ſtream":true}`, false},
	{"null model", `{"model":null,"messages":[{"role":"user","content":"x"}]}`, false},
	{"fractional max_tokens", `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":16.0}`, false},
	{"overflowing max_tokens", `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":99999999999999999999}`, false},
	{"overflowing temperature", `{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":1e999}`, false},
	{"string stream", `{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}`, false},
	{"null message", `{"model":"m","messages":[null]}`, false},
	{"trailing comma", `{"model":"m","messages":[{"role":"user","content":"x"},]}`, false},
	{"leading zero", `{"model":"m","messages":[{"role":"user","content":"x"}],"seed":01}`, false},
	{"control character in a string", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\tb\"}]}", false},
	{"bad escape", `{"model":"m","messages":[{"role":"user","content":"\x"}]}`, false},
	{"text after the object", `{"model":"m","messages":[{"role":"user","content":"x"}]} {}`, false},
	{"unclosed object", `{"model":"m","messages":[{"role":"user","content":"x"}]`, false},
	{"deep nesting", `{"model":"m","messages":[{"role":"user","content":"x"}],"x":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`, false},
}

func TestScanChatMatchesDecoding(t *testing.T) {
	for _, tc := range scanCases {
		t.Run(tc.name, func(t *testing.T) {
			_, scanned := scanChat([]byte(tc.body))
			if scanned != tc.scanned {
				t.Errorf("scanned = %v, want %v", scanned, tc.scanned)
			}
			sameAsDecoding(t, []byte(tc.body))
		})
	}
}

func TestScanChatLeavesTheBodyAlone(t *testing.T) {
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"abc"}],"tools":[1]}`)
	want := bytes.Clone(body)
	r, ok := scanChat(body)
	if !ok {
		t.Fatal("not scanned")
	}
	_ = append(r.Messages[0].Content, 'x')
	_ = append(r.Tools, 'x')
	if !bytes.Equal(body, want) {
		t.Fatalf("appending to a raw field wrote into the body: %s", body)
	}
}

// sameAsDecoding fails unless ParseChat gives for body exactly what the
// decoder and checkKeys alone give.
func sameAsDecoding(t *testing.T, body []byte) {
	t.Helper()
	sameScanAsDecoding(t, body, parseChat)
}

// sameScanAsDecoding fails unless parse gives for body, scanning, exactly
// the request or the error it gives with the decoder and checkKeys alone.
func sameScanAsDecoding[R any](t *testing.T, body []byte, parse func(body []byte, scan bool) (R, *Error)) {
	t.Helper()
	got, gotErr := parse(body, true)
	want, wantErr := parse(body, false)
	if !reflect.DeepEqual(gotErr, wantErr) {
		t.Fatalf("error %+v, the decoder's %+v", gotErr, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Fatalf("request %s\nthe decoder's %s", g, w)
	}
}

// FuzzScanChatMatchesDecoding checks that the one-pass reader of chat
// requests agrees with encoding/json and checkKeys on any body: the same
// request (every field, raw values byte for byte), or the same error.
func FuzzScanChatMatchesDecoding(f *testing.F) {
	for _, tc := range scanCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sameAsDecoding(t, body)
	})
}

// BenchmarkParseChat is the front end's parse of a typical chat request
// (the overhead benchmark's, about 200 prompt tokens), by ParseChat and by
// the decoder it replaces.
func BenchmarkParseChat(b *testing.B) {
	body := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a careful assistant for an engineering team. Answer in plain English, cite the relevant section of the document when you can, and say so when the document does not answer the question. Keep answers under five sentences."},{"role":"user","content":"Our deployment runs three gateway nodes behind a load balancer, each with 2 vCPUs and 4 GiB of memory. Last week the p99 latency rose from 180 ms to 1.2 s during the nightly batch (about 40,000 requests between 01:00 and 02:00 UTC), while CPU stayed below 60%. The backend's x-ratelimit-remaining-tokens header dropped to zero several times. Which of these is the most likely cause, and what should we change first: the TPM limits of the batch consumer, the priority groups of the route, or the size of the nodes?"}],"max_tokens":16}`)
	for _, tc := range []struct {
		name string
		scan bool
	}{{"scan", true}, {"decoder", false}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, e := parseChat(body, tc.scan); e != nil {
					b.Fatal(e)
				}
			}
		})
	}
}

// validCases are texts Valid must judge as json.Valid does.
var validCases = []string{
	``, ` `, `null`, ` true `, `false`, `nul`, `truex`, `0`, `-0`, `01`, `-`, `1.`, `1.5`, `1e`, `1e+5`, `1E-05`, `.5`, `+1`,
	`""`, `"\u00e9\ud83d\ude00\n\"\\\/\b\f\r\t"`, `"\x"`, `"\u12g4"`, `"a` + "\x01" + `"`, "\"\xff\"", `"`,
	`[]`, `[ ]`, `[1,]`, `[,1]`, `[1 2]`, `{}`, `{"a":1,"a":2}`, `{"a" 1}`, `{"a":}`, `{1:1}`, `{"a":1,}`, `{"a":1} x`,
	strings.Repeat("[", maxNestingDepth) + strings.Repeat("]", maxNestingDepth),
	strings.Repeat("[", maxNestingDepth+1) + strings.Repeat("]", maxNestingDepth+1),
	strings.Repeat(`{"a":`, maxNestingDepth) + "1" + strings.Repeat("}", maxNestingDepth),
	strings.Repeat(`{"a":`, maxNestingDepth+1) + "1" + strings.Repeat("}", maxNestingDepth+1),
}

func TestValidMatchesDecoding(t *testing.T) {
	for _, text := range validCases {
		if got, want := Valid([]byte(text)), json.Valid([]byte(text)); got != want {
			t.Errorf("Valid(%.40q) = %v, json.Valid says %v", text, got, want)
		}
	}
}

// FuzzValidMatchesDecoding checks Valid against json.Valid on any text.
func FuzzValidMatchesDecoding(f *testing.F) {
	for _, text := range validCases[:len(validCases)-4] {
		f.Add([]byte(text))
	}
	for _, tc := range scanCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		if got, want := Valid(text), json.Valid(text); got != want {
			t.Fatalf("Valid = %v, json.Valid says %v", got, want)
		}
	})
}

// BenchmarkValid is Valid against json.Valid on the mock's chat answer.
func BenchmarkValid(b *testing.B) {
	answer := []byte(`{"id":"chatcmpl-UPEZGICTD3SCHFN7MNH4RGHCFW","object":"chat.completion","created":1796584302,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Better top had have last few page night form means. Four then almost an slow"},"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":23,"completion_tokens":16,"total_tokens":39}}`)
	for _, tc := range []struct {
		name  string
		valid func([]byte) bool
	}{{"Valid", Valid}, {"json.Valid", json.Valid}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(answer)))
			b.ReportAllocs()
			for b.Loop() {
				if !tc.valid(answer) {
					b.Fatal("invalid")
				}
			}
		})
	}
}

// TestSpecialBytesFindsTheFirst: the lowest byte specialBytes marks is the
// first byte strByte marks, for every byte value, position and byte before.
func TestSpecialBytesFindsTheFirst(t *testing.T) {
	for p := range 8 {
		for c := range 256 {
			for _, before := range []byte{'a', 0x80, 0xff, 0x21, 0x5d} {
				var w [8]byte
				for i := range w {
					w[i] = before
				}
				w[p] = byte(c)
				for i := p + 1; i < 8; i++ {
					w[i] = '"' // specials after the first change nothing
				}
				m := specialBytes(binary.LittleEndian.Uint64(w[:]))
				first := 8
				for i, b := range w {
					if strByte[b] {
						first = i
						break
					}
				}
				got := 8
				if m != 0 {
					got = bits.TrailingZeros64(m) / 8
				}
				if got != first {
					t.Fatalf("%q: first special byte at %d, specialBytes says %d", w, first, got)
				}
			}
		}
	}
}

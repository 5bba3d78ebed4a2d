package openai

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func readAll(t *testing.T, stream string) ([]Event, error) {
	t.Helper()
	er := NewEventReader(strings.NewReader(stream))
	var evs []Event
	for {
		ev, err := er.Next()
		if err != nil {
			return evs, err
		}
		evs = append(evs, Event{Raw: bytes.Clone(ev.Raw), Data: bytes.Clone(ev.Data)})
	}
}

func TestEventReader(t *testing.T) {
	tests := []struct {
		name     string
		stream   string
		data     []string
		wantErr  error
		wantDone bool
	}{
		{"openai chunks", "data: {\"a\":1}\n\ndata: {\"a\":2}\n\ndata: [DONE]\n\n", []string{`{"a":1}`, `{"a":2}`, "[DONE]"}, io.EOF, true},
		{"crlf lines", "data: x\r\n\r\ndata: [DONE]\r\n\r\n", []string{"x", "[DONE]"}, io.EOF, true},
		{"multi-line data", "data: a\ndata: b\n\n", []string{"a\nb"}, io.EOF, false},
		{"comments and event names", ": keep-alive\n\nevent: message\ndata: x\nid: 7\n\n", []string{"", "x"}, io.EOF, false},
		{"no space after colon", "data:x\n\n", []string{"x"}, io.EOF, false},
		{"stray blank lines", "\n\n\ndata: x\n\n\n", []string{"x"}, io.EOF, false},
		{"cut mid-event", "data: x\n\ndata: {\"partial", []string{"x"}, io.ErrUnexpectedEOF, false},
		{"empty stream", "", nil, io.EOF, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := readAll(t, tc.stream)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("final error %v, want %v", err, tc.wantErr)
			}
			if len(evs) != len(tc.data) {
				t.Fatalf("got %d events, want %d", len(evs), len(tc.data))
			}
			var raw []byte
			for i, ev := range evs {
				if string(ev.Data) != tc.data[i] {
					t.Errorf("event %d data %q, want %q", i, ev.Data, tc.data[i])
				}
				raw = append(raw, ev.Raw...)
			}
			if tc.wantDone != (len(evs) > 0 && evs[len(evs)-1].Done()) {
				t.Errorf("Done() on the last event = %v, want %v", !tc.wantDone, tc.wantDone)
			}
			if tc.wantErr == io.EOF && strings.TrimLeft(tc.stream, "\n") != "" && !bytes.Contains([]byte(tc.stream), raw) {
				t.Errorf("raw bytes %q are not the stream's own", raw)
			}
		})
	}
}

func TestEventReaderLongLine(t *testing.T) {
	long := strings.Repeat("x", 100<<10)
	evs, err := readAll(t, "data: "+long+"\n\ndata: [DONE]\n\n")
	if !errors.Is(err, io.EOF) || len(evs) != 2 || string(evs[0].Data) != long {
		t.Fatalf("a 100 KB event must come through whole: %d events, err %v", len(evs), err)
	}
}

func TestEventReaderTooLarge(t *testing.T) {
	_, err := readAll(t, "data: "+strings.Repeat("x", MaxEventBytes+10)+"\n\n")
	if !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("got %v, want ErrEventTooLarge", err)
	}
}

func FuzzEventReader(f *testing.F) {
	f.Add([]byte("data: {\"a\":1}\n\ndata: [DONE]\n\n"))
	f.Add([]byte("data: a\r\ndata: b\r\n\r\n: c\n\n"))
	f.Add([]byte("data: x"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		er := NewEventReader(bytes.NewReader(stream))
		var total int
		for {
			ev, err := er.Next()
			total += len(ev.Raw)
			if err != nil {
				break
			}
			if len(ev.Raw) == 0 {
				t.Fatal("an event with no bytes")
			}
		}
		if total > len(stream) {
			t.Fatalf("events hold %d bytes of a %d-byte stream", total, len(stream))
		}
	})
}

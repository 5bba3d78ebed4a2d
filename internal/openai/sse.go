package openai

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// MaxEventBytes bounds one Server-Sent Event. A chat chunk is a few hundred
// bytes; a tool-call chunk a few KB. Anything near this is a broken upstream.
const MaxEventBytes = 8 << 20

// ErrEventTooLarge is returned when an event exceeds MaxEventBytes.
var ErrEventTooLarge = errors.New("server-sent event exceeds the size limit")

// Event is one Server-Sent Event as it came off the wire.
type Event struct {
	// Raw is the event's bytes including its terminating blank line, so a
	// pass-through can write it back unchanged. Valid until the next Next call.
	Raw []byte
	// Data is the event's data lines joined by '\n' (the SSE rule).
	Data []byte
}

// Done reports whether this is the OpenAI stream terminator "data: [DONE]".
func (e *Event) Done() bool { return bytes.Equal(e.Data, []byte("[DONE]")) }

// EventReader splits a text/event-stream into events.
type EventReader struct {
	r    *bufio.Reader
	raw  []byte
	data []byte
}

// NewEventReader reads events from r.
func NewEventReader(r io.Reader) *EventReader {
	return &EventReader{r: bufio.NewReaderSize(r, 16<<10)}
}

// Next returns the next event. At a clean end of stream it returns io.EOF; a
// stream that ends inside an event returns io.ErrUnexpectedEOF with the partial
// event's bytes in Raw.
func (er *EventReader) Next() (Event, error) {
	er.raw = er.raw[:0]
	er.data = er.data[:0]
	hasData := false
	for {
		line, err := er.r.ReadSlice('\n')
		if len(er.raw)+len(line) > MaxEventBytes {
			return Event{}, ErrEventTooLarge
		}
		er.raw = append(er.raw, line...)
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line: keep reading until its newline.
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = er.r.ReadSlice('\n')
				if len(er.raw)+len(line) > MaxEventBytes {
					return Event{}, ErrEventTooLarge
				}
				er.raw = append(er.raw, line...)
			}
			line = er.raw[lastLineStart(er.raw):]
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if len(bytes.TrimSpace(er.raw)) == 0 {
					return Event{}, io.EOF
				}
				return Event{Raw: er.raw}, io.ErrUnexpectedEOF
			}
			return Event{Raw: er.raw}, fmt.Errorf("reading event stream: %w", err)
		}
		content := bytes.TrimRight(line, "\r\n")
		if len(content) == 0 {
			if len(bytes.TrimSpace(er.raw)) == 0 {
				er.raw = er.raw[:0] // stray blank lines between events
				continue
			}
			return Event{Raw: er.raw, Data: er.data}, nil
		}
		if value, ok := bytes.CutPrefix(content, []byte("data:")); ok {
			value = bytes.TrimPrefix(value, []byte(" "))
			if hasData {
				er.data = append(er.data, '\n')
			}
			er.data = append(er.data, value...)
			hasData = true
		}
	}
}

func lastLineStart(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	return bytes.LastIndexByte(b[:len(b)-1], '\n') + 1
}

// WriteDataEvent appends the event "data: payload\n\n" to dst.
func WriteDataEvent(dst, payload []byte) []byte {
	dst = append(dst, "data: "...)
	dst = append(dst, payload...)
	return append(dst, '\n', '\n')
}

// Buffered returns the number of bytes already read from the stream but not yet
// returned as events: zero means the next event is not in hand yet.
func (er *EventReader) Buffered() int { return er.r.Buffered() }

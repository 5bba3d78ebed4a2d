package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

type countingWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.buf.Write(p)
}

func (c *countingWriter) snapshot() (string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String(), c.writes
}

func TestLogWriterBatchesLinesAndFlushes(t *testing.T) {
	out := &countingWriter{}
	lw := newLogWriter(out, 20*time.Millisecond)
	for range 1000 {
		_, _ = lw.Write([]byte(`{"msg":"request"}` + "\n"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		text, writes := out.snapshot()
		if strings.Count(text, "\n") == 1000 {
			if writes > 10 {
				t.Errorf("1000 lines took %d writes, want a few batches", writes)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lines not flushed within 5s: %d of 1000", strings.Count(text, "\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, _ = lw.Write([]byte("last\n"))
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	if text, _ := out.snapshot(); !strings.HasSuffix(text, "last\n") {
		t.Error("Close did not write the last line")
	}
}

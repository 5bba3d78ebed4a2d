package main

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a bytes.Buffer safe for the concurrent writes of loggers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestLogFormatSwitchesDerivedLoggers(t *testing.T) {
	var buf lockedBuffer
	lv := new(slog.LevelVar)
	f := newLogFormat(&buf, lv, "json")
	root := slog.New(f.handler())
	derived := root.With("component", "cache").WithGroup("req")
	derived.Info("before", "id", 1)
	f.set("text")
	derived.Info("after", "id", 2)
	root.Debug("hidden") // the level still applies
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines = %q", lines)
	}
	if !strings.HasPrefix(lines[0], "{") || !strings.Contains(lines[0], `"component":"cache"`) || !strings.Contains(lines[0], `"req":{"id":1}`) {
		t.Errorf("JSON line = %s", lines[0])
	}
	if strings.HasPrefix(lines[1], "{") || !strings.Contains(lines[1], "component=cache") || !strings.Contains(lines[1], "req.id=2") {
		t.Errorf("text line after the switch = %s", lines[1])
	}

	// Loggers in use while the format flips: every line is whole, in one
	// of the two formats.
	buf = lockedBuffer{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := root.With("worker", w)
			for i := range 200 {
				l.Info("line", "i", i)
			}
		}()
	}
	for i := range 50 {
		f.set([]string{"json", "text"}[i%2])
	}
	wg.Wait()
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		json, text := strings.HasPrefix(l, "{") && strings.HasSuffix(l, "}"), strings.HasPrefix(l, "time=")
		if !json && !text {
			t.Fatalf("a torn or unknown line: %q", l)
		}
	}
}

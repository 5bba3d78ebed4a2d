package api

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
)

func TestLongStreamOutlivesServerTimeouts(t *testing.T) {
	noLeaks(t)
	events := make(chan string)
	east := newUpstream(t, sseUpstream(events, false))
	s := twoBackends(east, east)
	s.mutate = func(c *config.Config) { c.Server.BodyReadTimeout = 100 * time.Millisecond }
	g := newGateway(t, s)
	go func() {
		for i := range 4 {
			time.Sleep(150 * time.Millisecond)
			events <- "data: {\"i\":" + string(rune('0'+i)) + "}\n\n"
		}
		events <- "data: [DONE]\n\n"
		close(events)
	}()
	resp, r := openStream(t, context.Background(), g.data.URL)
	defer resp.Body.Close()
	all, err := io.ReadAll(r)
	if err != nil || !strings.HasSuffix(string(all), "data: [DONE]\n\n") || strings.Count(string(all), "data:") != 5 {
		t.Fatalf("a 750 ms stream behind a 100 ms body-read timeout: err %v, got %q", err, all)
	}
}

func TestSlowBodyIsCutOff(t *testing.T) {
	noLeaks(t)
	east := newUpstream(t, okChat("east"))
	s := twoBackends(east, east)
	s.mutate = func(c *config.Config) { c.Server.BodyReadTimeout = 200 * time.Millisecond }
	g := newGateway(t, s)
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.data.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Promise 1000 bytes, send 10, then stall.
	_, _ = io.WriteString(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\napi-key: "+keyA+"\r\nContent-Length: 1000\r\n\r\n{\"model\":")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body within 5s: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("stalled body: %d, want 400", resp.StatusCode)
	}
	if east.calls.Load() != 0 {
		t.Fatal("a stalled request reached the backend")
	}
}

func TestSilentBodyOnARefusedRequestDoesNotHoldTheConnection(t *testing.T) {
	noLeaks(t)
	east := newUpstream(t, okChat("east"))
	s := twoBackends(east, east)
	s.mutate = func(c *config.Config) { c.AdminToken = "admin-secret" }
	g := newGateway(t, s)
	for _, tc := range []struct{ name, url, path string }{
		{"data plane without a key", g.data.URL, "/v1/chat/completions"},
		{"data plane unknown route", g.data.URL, "/v1/nowhere"},
		{"admin without a token", g.admin.URL, "/admin/quota/team-a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(tc.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// Declares a body it never sends.
			_, _ = io.WriteString(conn, "POST "+tc.path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n")
			_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer within 3s (the default body deadline is 30s): %v", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 401 && resp.StatusCode != 404 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("connection still open after the answer: %v", err)
			}
		})
	}
}

package edge

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// serve runs NewServer(h) on a loopback port behind Limit and returns its address.
func serve(t *testing.T, h http.Handler, o Options, maxConns int, refused func()) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h, o)
	go func() { _ = srv.Serve(Limit(ln, maxConns, refused)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readResponse reads one response from c within d.
func readResponse(t *testing.T, c net.Conn, br *bufio.Reader, d time.Duration) (*http.Response, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response within %v: %v", d, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// closedWithin reports whether the server closes c within d.
func closedWithin(c net.Conn, br *bufio.Reader, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := br.ReadByte()
	// A reset is closed too: a client still writing to a connection the
	// server closed gets an RST instead of the FIN.
	return err == io.EOF || errors.Is(err, syscall.ECONNRESET)
}

// refuseUnread answers 401 without reading the body, as an auth check does.
var refuseUnread = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		_, _ = io.WriteString(w, "ok")
		return
	}
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, "no key")
})

func TestSilentBodyIsAnsweredAndClosedAtOnce(t *testing.T) {
	addr := serve(t, refuseUnread, Options{BodyReadTimeout: time.Minute}, 0, nil)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	// Declares a body and never sends it.
	_, _ = io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	start := time.Now()
	resp, _ := readResponse(t, c, br, 5*time.Second)
	if resp.StatusCode != 401 || time.Since(start) > 2*time.Second {
		t.Fatalf("status %d after %v, want 401 at once", resp.StatusCode, time.Since(start))
	}
	if !closedWithin(c, br, 2*time.Second) {
		t.Fatal("the connection with an unread body stayed open")
	}
}

func TestManySilentSocketsLeaveHealthzResponsive(t *testing.T) {
	addr := serve(t, refuseUnread, Options{BodyReadTimeout: time.Minute}, 0, nil)
	for range 200 {
		c := dial(t, addr)
		_, _ = io.WriteString(c, "POST /admin/quota HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	}
	c := dial(t, addr)
	br := bufio.NewReader(c)
	_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := readResponse(t, c, br, 5*time.Second); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("healthz behind 200 silent sockets: %d %q", resp.StatusCode, body)
	}
}

func TestBodyDeadlineCountsFromFirstByte(t *testing.T) {
	var readErr atomic.Value
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		if err != nil {
			readErr.Store(err.Error())
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	addr := serve(t, h, Options{BodyReadTimeout: 300 * time.Millisecond}, 0, nil)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
	// A byte every 50 ms: never idle for long, but the whole body would take 50 s.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
	start := time.Now()
	resp, _ := readResponse(t, c, br, 5*time.Second)
	if resp.StatusCode != 400 || time.Since(start) > 3*time.Second {
		t.Fatalf("trickled body: status %d after %v, want 400 near 300ms", resp.StatusCode, time.Since(start))
	}
	if readErr.Load() == nil {
		t.Fatal("the handler's read did not fail")
	}
	if !closedWithin(c, br, 2*time.Second) {
		t.Fatal("the connection stayed open after a cut-off body")
	}
}

func TestAnswerOutlivesTheReadDeadline(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		select {
		case <-time.After(600 * time.Millisecond):
		case <-r.Context().Done():
			return // the deadline cancelled the request: the test fails on the missing answer
		}
		_, _ = io.WriteString(w, "late answer")
	})
	addr := serve(t, h, Options{BodyReadTimeout: 200 * time.Millisecond}, 0, nil)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	for i, req := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n", // the same kept-alive connection, no body
	} {
		_, _ = io.WriteString(c, req)
		if resp, body := readResponse(t, c, br, 5*time.Second); resp.StatusCode != 200 || body != "late answer" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
}

func TestConnectionCapRefusesClearly(t *testing.T) {
	var refusals atomic.Int64
	addr := serve(t, refuseUnread, Options{}, 2, func() { refusals.Add(1) })
	held := []net.Conn{dial(t, addr), dial(t, addr)}
	for _, c := range held { // both served: the cap counts them
		br := bufio.NewReader(c)
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		readResponse(t, c, br, 5*time.Second)
	}
	c := dial(t, addr)
	br := bufio.NewReader(c)
	_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := readResponse(t, c, br, 5*time.Second)
	if resp.StatusCode != 503 || !strings.Contains(body, "too_many_connections") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third connection over a cap of 2: %d %q", resp.StatusCode, body)
	}
	if refusals.Load() != 1 {
		t.Fatalf("refusals counted: %d", refusals.Load())
	}
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dial(t, addr)
		br := bufio.NewReader(c)
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, _ := readResponse(t, c, br, 5*time.Second)
		c.Close()
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a freed slot was never given back")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A client still uploading an oversized body when the 413 comes (Go's
// http.Client, curl) must be able to finish the upload: a server that closes
// with the rest unread resets the connection, and the client's failed write
// can then win over the answer it has not read yet.
func TestOversizedBodyUploadFinishesAndGets413(t *testing.T) {
	tooLarge := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<20)); err != nil {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	addr := serve(t, tooLarge, Options{}, 0, nil)
	const size = 20 << 20
	c := dial(t, addr)
	br := bufio.NewReader(c)
	uploaded := make(chan error, 1)
	go func() {
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
		if err == nil {
			_, err = io.CopyN(c, zeros{}, size)
		}
		uploaded <- err
	}()
	resp, body := readResponse(t, c, br, 5*time.Second)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d (%q), want 413", resp.StatusCode, body)
	}
	if err := <-uploaded; err != nil {
		t.Fatalf("the upload was cut off: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestSetMaxChangesTheCapLive: a raised cap serves a connection the old one
// refused; a lowered cap closes nothing and refuses the next.
func TestSetMaxChangesTheCapLive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := Limit(ln, 1, nil)
	srv := NewServer(refuseUnread, Options{})
	go func() { _ = srv.Serve(lim) }()
	t.Cleanup(func() { _ = srv.Close() })
	addr := ln.Addr().String()
	get := func() (net.Conn, int) {
		c := dial(t, addr)
		br := bufio.NewReader(c)
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, _ := readResponse(t, c, br, 5*time.Second)
		return c, resp.StatusCode
	}
	first, code := get()
	if code != 200 {
		t.Fatalf("first connection: %d", code)
	}
	if _, code := get(); code != 503 {
		t.Fatalf("second connection over a cap of 1: %d", code)
	}
	lim.SetMax(2)
	second, code := get()
	if code != 200 {
		t.Fatalf("second connection after the cap went to 2: %d", code)
	}
	lim.SetMax(1)
	if _, err := io.WriteString(first, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, _ := readResponse(t, first, bufio.NewReader(first), 5*time.Second); resp.StatusCode != 200 {
		t.Fatalf("a connection held across a lowered cap: %d", resp.StatusCode)
	}
	if _, code := get(); code != 503 {
		t.Fatalf("a new connection over the lowered cap: %d", code)
	}
	second.Close()
	first.Close()
}

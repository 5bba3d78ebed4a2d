package edge

import (
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure one listener's server; zero fields get defaults.
type Options struct {
	// ReadHeaderTimeout bounds reading the request headers (default 10s).
	ReadHeaderTimeout time.Duration
	// BodyReadTimeout bounds reading the whole request, headers and body,
	// from its first byte (default 30s). It holds whatever the handler does
	// with the body: one that is never read is never waited for beyond it.
	BodyReadTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections (default 120s).
	IdleTimeout time.Duration
	// ErrorLog receives the server's own errors; nil = the log package's.
	ErrorLog *log.Logger
}

// NewServer returns the server for handler h: deadlines on reading, none on
// writing (a whole-response write timeout would cut live streams; streams set
// their own per-chunk deadline), and h wrapped in Guard.
func NewServer(h http.Handler, o Options) *http.Server {
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = 10 * time.Second
	}
	if o.BodyReadTimeout <= 0 {
		o.BodyReadTimeout = 30 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 120 * time.Second
	}
	return &http.Server{
		Handler:           Guard(h),
		ReadHeaderTimeout: min(o.ReadHeaderTimeout, o.BodyReadTimeout),
		// net/http sets this deadline when the request's first bytes arrive;
		// Guard lifts it once the body is read, so it never cuts an answer.
		ReadTimeout:    o.BodyReadTimeout,
		IdleTimeout:    o.IdleTimeout,
		MaxHeaderBytes: 1 << 20,
		ErrorLog:       o.ErrorLog,
	}
}

// Guard wraps h so that a request's read deadline bounds its body only:
// it is lifted when the body has been read to its end (or at once when there
// is none), so the server's background read never cancels a long answer. A
// response written while the body is still unread closes the connection:
// net/http would otherwise wait to drain that body before answering, for as
// long as a silent client cares to hold it. Any write deadline a previous
// request on the connection left behind (a stream's) is cleared.
func Guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Time{})
		if r.Body == nil || r.Body == http.NoBody {
			_ = rc.SetReadDeadline(time.Time{})
			h.ServeHTTP(w, r)
			return
		}
		b := &body{ReadCloser: r.Body, rc: rc, size: r.ContentLength}
		r.Body = b
		ww := &writer{ResponseWriter: w, body: b}
		h.ServeHTTP(ww, r)
		ww.mark() // a handler that wrote nothing gets the same treatment
		if !b.done.Load() && (b.size < 0 || b.size > drainedBytes) {
			linger(rc, b)
		}
	})
}

// A refused body larger than net/http drains is read and discarded for at
// most lingerTime and lingerBytes after the answer went out. Closing a socket
// that still holds unread bytes makes the kernel send a reset; a client still
// writing a 50 MB body then fails its write, and Go's http.Client reports that
// write error instead of the 413 whenever it sees it before the answer.
const (
	lingerTime  = 5 * time.Second
	lingerBytes = 64 << 20
)

func linger(rc *http.ResponseController, b *body) {
	if rc.Flush() != nil {
		return
	}
	_ = rc.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.CopyN(io.Discard, b.ReadCloser, lingerBytes)
}

// body tracks whether the request body was read to its end.
type body struct {
	io.ReadCloser
	rc   *http.ResponseController
	size int64 // declared length, -1 if unknown
	done atomic.Bool
}

// drainedBytes is how much of an unread body net/http reads after the
// handler before it gives up and closes (its maxPostHandlerReadBytes).
const drainedBytes = 256 << 10

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.done.Swap(true) {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// writer closes the connection after a response that left the body unread.
type writer struct {
	http.ResponseWriter
	body  *body
	wrote bool
}

func (w *writer) mark() {
	if w.wrote {
		return
	}
	w.wrote = true
	if !w.body.done.Load() {
		// Closing alone is not enough: net/http still drains a body of up
		// to 256 KB before it closes. An expired deadline ends that at once.
		// (Larger bodies are not drained; the client may then still be
		// sending, and must get the chance to read the answer first.)
		w.ResponseWriter.Header().Set("Connection", "close")
		if w.body.size <= drainedBytes {
			_ = w.body.rc.SetReadDeadline(time.Now())
		}
	}
}

func (w *writer) WriteHeader(code int) {
	if code >= 200 {
		w.mark()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *writer) Write(p []byte) (int, error) {
	w.mark()
	return w.ResponseWriter.Write(p)
}

// Flush is here for callers that assert http.Flusher; the rest goes through Unwrap.
func (w *writer) Flush() {
	w.mark()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection's deadlines.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Limit returns ln capped at max connections served at once (max <= 0: no
// cap). A connection beyond the cap is answered at once with a 503 in the
// OpenAI error format and closed, so clients see why instead of a hang.
// refused, if not nil, is called for each (a metric). SetMax changes the cap.
func Limit(ln net.Listener, max int, refused func()) *Limited {
	l := &Limited{Listener: ln, refused: refused}
	l.max.Store(int64(max))
	return l
}

// Limited is a listener capped at a number of connections served at once.
type Limited struct {
	net.Listener
	active   atomic.Int64 // connections accepted and not yet closed
	max      atomic.Int64 // <= 0: no cap
	refused  func()
	refusing atomic.Int32 // refusals being written now
}

// SetMax changes the cap for the connections accepted from now on (a
// configuration reload; <= 0: no cap). Connections over a lowered cap are
// not closed: they finish, and new ones wait for the count to fall.
func (l *Limited) SetMax(max int) { l.max.Store(int64(max)) }

// maxRefusing bounds the goroutines writing refusals; past it, a connection
// beyond the cap is closed without a word.
const maxRefusing = 64

func (l *Limited) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		max := l.max.Load()
		if n := l.active.Add(1); max <= 0 || n <= max {
			return &conn{Conn: c, release: sync.OnceFunc(func() { l.active.Add(-1) })}, nil
		}
		l.active.Add(-1)
		if l.refused != nil {
			l.refused()
		}
		if l.refusing.Add(1) > maxRefusing {
			l.refusing.Add(-1)
			_ = c.Close()
			continue
		}
		go func() {
			defer l.refusing.Add(-1)
			refuse(c, int(max))
		}()
	}
}

// refuse answers a connection over the cap and closes it.
func refuse(c net.Conn, max int) {
	defer c.Close()
	body := `{"error":{"message":"The gateway is serving its maximum of ` + strconv.Itoa(max) +
		` connections on this listener; retry shortly.","type":"server_error","code":"too_many_connections"}}`
	_ = c.SetDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\n\r\n"+body)
	// Read what the client sent before closing: closing on unread bytes
	// resets the connection, and the client might never see the answer.
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}
}

// conn gives its slot back when closed.
type conn struct {
	net.Conn
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

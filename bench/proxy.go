package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// ServeReverseProxy runs a bare httputil.ReverseProxy on listen that forwards
// every request to upstream (an http:// base URL): the floor the gateway's
// overhead is compared with. Its transport to upstream is tuned like the
// gateway's (256 idle connections per host, no transparent compression) so
// the comparison measures the gateway's work, not pool sizes.
//
// Once listening it writes "reverse-proxy listening on ADDR\n" to stdout
// (ADDR is the bound address, so listen may use port 0). It serves until ctx
// is cancelled, then shuts down gracefully and returns nil.
func ServeReverseProxy(ctx context.Context, listen, upstream string, stdout io.Writer) error {
	target, err := url.Parse(upstream)
	if err != nil {
		return fmt.Errorf("reverse proxy: upstream: %w", err)
	}
	if (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return fmt.Errorf("reverse proxy: upstream %q is not an absolute http(s) URL", upstream)
	}
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport: &http.Transport{
			DialContext:         d.DialContext,
			ForceAttemptHTTP2:   true,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		FlushInterval: -1, // stream SSE event by event, as the gateway does
		ErrorLog:      log.New(io.Discard, "", 0),
	}

	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("reverse proxy: %w", err)
	}
	srv := &http.Server{
		Handler:           proxy,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	if _, err := fmt.Fprintf(stdout, "reverse-proxy listening on %s\n", l.Addr()); err != nil {
		l.Close()
		return fmt.Errorf("reverse proxy: %w", err)
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("reverse proxy: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("reverse proxy: shutdown: %w", err)
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("reverse proxy: %w", err)
	}
	return nil
}

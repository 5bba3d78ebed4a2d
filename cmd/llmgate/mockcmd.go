package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/llmgate/llmgate/internal/mock"
)

// mockShutdownGrace is how long a stopping mock upstream lets requests in
// flight finish before it closes their connections.
const mockShutdownGrace = 5 * time.Second

// runMockUpstream runs `llmgate mock-upstream`: the simulated Azure OpenAI /
// OpenAI backend of SPEC §10, until ctx is cancelled.
func runMockUpstream(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mock-upstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: llmgate mock-upstream [flags]\n\n"+
			"Runs a simulated Azure OpenAI / OpenAI backend with deterministic answers,\n"+
			"real token counts, its own TPM limit and injectable failures.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	listen := fs.String("listen", "127.0.0.1:9000", "address to listen on (`host:port`; port 0 picks a free one)")
	latency := fs.Duration("latency", 20*time.Millisecond, "time to first token")
	tokenRate := fs.Float64("token-rate", 0, "generated tokens per second per request (0 = instant)")
	tpm := fs.Int64("tpm", 0, "the backend's own tokens-per-minute limit (0 = none)")
	failRate := fs.Float64("fail-rate", 0, "share of requests answered 500, from 0 to 1")
	apiKey := fs.String("api-key", "", "key clients must send in api-key or Authorization: Bearer (empty = none)")
	name := fs.String("name", mock.DefaultName, "name reported in the x-mock-backend header")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("mock-upstream: unexpected argument %q", fs.Arg(0))
	case *latency < 0:
		return fmt.Errorf("mock-upstream: --latency %v is negative", *latency)
	case !(*tokenRate >= 0): // also rejects NaN
		return fmt.Errorf("mock-upstream: --token-rate %v must be 0 or more", *tokenRate)
	case *tpm < 0:
		return fmt.Errorf("mock-upstream: --tpm %d must be 0 or more", *tpm)
	case !(*failRate >= 0 && *failRate <= 1):
		return fmt.Errorf("mock-upstream: --fail-rate %v must be between 0 and 1", *failRate)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *listen, err)
	}
	srv := &http.Server{
		Handler: mock.New(mock.Options{
			Latency:   *latency,
			TokenRate: *tokenRate,
			TPM:       *tpm,
			FailRate:  *failRate,
			APIKey:    *apiKey,
			Name:      *name,
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: it would cut long streams.
	}
	fmt.Fprintf(stdout, "mock-upstream listening on %s\n", ln.Addr())

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serving mock upstream on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), mockShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		// Streams still running after the grace period: cut them.
		if cerr := srv.Close(); cerr != nil {
			return fmt.Errorf("closing mock upstream: %w", cerr)
		}
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving mock upstream on %s: %w", ln.Addr(), err)
	}
	return nil
}

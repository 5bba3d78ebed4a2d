//go:build linux

package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/affinity"
	"github.com/llmgate/llmgate/internal/cputime"
	"github.com/llmgate/llmgate/internal/store"
)

// wireTransport answers chat with benchChatAnswer and the Responses API
// with benchResponse under a fresh id, made as OpenAI's are (timed) or in
// no order (random), in process.
type wireTransport struct{ ids string }

func (t wireTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	// A fresh copy either way, as a body read from the network is.
	body := append(make([]byte, 0, len(benchResponse)+32), benchChatAnswer...)
	if strings.HasSuffix(r.URL.Path, "/responses") {
		var b [24]byte
		_, _ = rand.Read(b[:])
		if t.ids == "timed" {
			now := time.Now()
			binary.BigEndian.PutUint32(b[:4], uint32(now.Unix()))
			binary.BigEndian.PutUint16(b[4:6], uint16(uint64(now.Nanosecond())<<16/1e9))
		}
		head, rest, _ := strings.Cut(benchResponse, "resp_BXIHL2PG72GNQT3VRZ3C3BLSY5")
		body = append(append(hex.AppendEncode(append(append(body[:0], head...), "resp_"...), b[:]), rest...), nil...)
	}
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       r,
	}, nil
}

// BenchmarkServeWire is one request of `llmgate bench overhead --features
// tpm,responses` in process, through a node with a TPM limit and its
// owner records in Badger on disk, as chat completions and as the
// Responses API (whose ids the upstream makes timed, as OpenAI's and
// Azure's are, or random): the node's work without the HTTP server and
// client. cpu-ns/op is the process's CPU per request, the affinity
// writer's and Badger's background work included.
func BenchmarkServeWire(b *testing.B) {
	for _, name := range []string{"chat", "responses/ids=timed", "responses/ids=random"} {
		b.Run(name, func(b *testing.B) {
			ids := "timed"
			if name == "responses/ids=random" {
				ids = "random"
			}
			db, err := store.Open(b.TempDir(), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			owners := affinity.Open(affinity.Options{DB: db.DB})
			b.Cleanup(func() { _ = owners.Close(); _ = db.Close() })
			loneCluster(b, owners)
			l, cfg := oneRouteNode(b)
			cfg.ApplyDefaults()
			g, err := New(cfg, Options{Limiter: l, Transport: wireTransport{ids: ids}, Owners: owners})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(g.Close)
			calls := benchCalls(b)
			call := calls["chat"]
			if name != "chat" {
				call = calls["responses"]
			}
			serve := func() Outcome {
				c := *call
				c.Model, c.Consumer, c.Header = c.Route, g.byName["team-a"], http.Header{}
				return g.Serve(context.Background(), httptest.NewRecorder(), &c)
			}
			for range 2000 {
				serve()
			}
			b.ReportAllocs()
			b.ResetTimer()
			before := cputime.Process()
			for b.Loop() {
				if out := serve(); out.Status != http.StatusOK {
					b.Fatalf("outcome %+v", out)
				}
			}
			b.ReportMetric(float64((cputime.Process()-before).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// loneCluster does to owners what the cluster of a node without peers
// does, as in `llmgate bench overhead`: it names no live peer, then takes
// the owners' news every 50 ms (its flush interval) until the benchmark
// ends. Without it, the news of every created response would pile up.
func loneCluster(b *testing.B, owners *affinity.Store) {
	owners.SetPeers(nil)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_, _ = owners.Outgoing(context.Background(), false)
			case <-stop:
				return
			}
		}
	}()
	b.Cleanup(func() { close(stop); <-done })
}

package telemetry

import (
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tracev1 "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func TestTraceExportEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		timeout time.Duration
		gzip    bool
		err     string // a part of the error; "" none
	}{
		{"defaults", nil, 10 * time.Second, false, ""},
		{"general timeout", map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "2500"}, 2500 * time.Millisecond, false, ""},
		{"traces timeout wins", map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "2500", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "300"}, 300 * time.Millisecond, false, ""},
		{"timeout that is no number", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "10s"}, 0, false, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"},
		{"zero timeout", map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "0"}, 0, false, "OTEL_EXPORTER_OTLP_TIMEOUT"},
		{"gzip", map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}, 10 * time.Second, true, ""},
		{"traces none wins over general gzip", map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none"}, 10 * time.Second, false, ""},
		{"unknown compression", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "zstd"}, 0, false, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"},
		{"missing CA file", map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"}, 0, false, "OTEL_EXPORTER_OTLP_CERTIFICATE"},
		{"client certificate without key", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": "/x/c.pem"}, 0, false, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE is set without"},
		{"client key without certificate", map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_KEY": "/x/k.pem"}, 0, false, "OTEL_EXPORTER_OTLP_CLIENT_KEY is set without"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := traceExportEnv(func(k string) string { return tc.env[k] })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one naming %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if x.timeout != tc.timeout || x.gzip != tc.gzip {
				t.Errorf("timeout %v gzip %v, want %v %v", x.timeout, x.gzip, tc.timeout, tc.gzip)
			}
		})
	}
	// A CA file that holds no certificate names its variable.
	junk := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := traceExportEnv(func(k string) string {
		return map[string]string{"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": junk}[k]
	})
	if err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE") {
		t.Errorf("a CA file without a certificate: %v", err)
	}
}

func TestOTLPMalformedSettingIsAnErrorAtStart(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "brotli")
	if _, err := NewOTLP(context.Background(), OTLPOptions{Endpoint: "http://127.0.0.1:1", MetricInterval: time.Hour}); err == nil ||
		!strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION") {
		t.Errorf("NewOTLP = %v, want an error naming the variable", err)
	}
}

// traceReceiver answers 200 to everything and sends each trace export's
// decoded request (gunzipped when so encoded) on got.
func traceReceiver(t *testing.T, got chan<- *tracev1.ExportTraceServiceRequest, encoding chan<- string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" {
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Errorf("gzip: %v", err)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil {
			t.Errorf("reading a trace export: %v", err)
			return
		}
		var m tracev1.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &m); err != nil {
			t.Errorf("decoding a trace export: %v", err)
			return
		}
		if encoding != nil {
			encoding <- r.Header.Get("Content-Encoding")
		}
		got <- &m
	})
}

func TestOTLPGzipReachesTheCollectorDecodable(t *testing.T) {
	got, enc := make(chan *tracev1.ExportTraceServiceRequest, 8), make(chan string, 8)
	srv := httptest.NewServer(traceReceiver(t, got, enc))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
	o, err := NewOTLP(context.Background(), OTLPOptions{Endpoint: srv.URL, MetricInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, s := o.Tracer().Start(context.Background(), "chat gpt-4o")
	s.End()
	_ = o.Shutdown(context.Background())
	if e := <-enc; e != "gzip" {
		t.Errorf("Content-Encoding %q, want gzip", e)
	}
	if m := <-got; countSpans([]*tracev1.ExportTraceServiceRequest{m}) != 1 {
		t.Errorf("the gzipped export decoded to %d spans, want 1", countSpans([]*tracev1.ExportTraceServiceRequest{m}))
	}
}

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, as PEM files in dir.
func testPKI(t *testing.T, dir string) (ca *x509.CertPool, server tls.Certificate, caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	ca = x509.NewCertPool()
	ca.AddCert(caCert)
	leaf := func(serial int64, usage x509.ExtKeyUsage, ip bool) ([]byte, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
		if ip {
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	scert, skey := leaf(2, x509.ExtKeyUsageServerAuth, true)
	server, err = tls.X509KeyPair(scert, skey)
	if err != nil {
		t.Fatal(err)
	}
	ccert, ckey := leaf(3, x509.ExtKeyUsageClientAuth, false)
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	for f, b := range map[string][]byte{caFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), certFile: ccert, keyFile: ckey} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ca, server, caFile, certFile, keyFile
}

func TestOTLPHTTPSCollectorWithATestCAAndClientCertificateGetsSpans(t *testing.T) {
	ca, serverCert, caFile, certFile, keyFile := testPKI(t, t.TempDir())
	got := make(chan *tracev1.ExportTraceServiceRequest, 8)
	srv := httptest.NewUnstartedServer(traceReceiver(t, got, nil))
	// mTLS: the collector refuses a client without a certificate of its CA.
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: ca, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	defer srv.Close()

	// Without the CA the collector's certificate is not trusted: the spans
	// are dropped, the request path unaffected.
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2000")
	o, err := NewOTLP(context.Background(), OTLPOptions{Endpoint: srv.URL, MetricInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.spans.post(context.Background(), nil); err == nil {
		t.Error("an export to a collector whose CA is not trusted succeeded")
	}
	_ = o.Shutdown(context.Background())

	t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", caFile)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", certFile)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", keyFile)
	o, err = NewOTLP(context.Background(), OTLPOptions{Endpoint: srv.URL, MetricInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, s := o.Tracer().Start(context.Background(), "chat gpt-4o")
	s.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.spans.ForceFlush(ctx); err != nil {
		t.Fatalf("export over mTLS: %v", err)
	}
	_ = o.Shutdown(ctx)
	select {
	case m := <-got:
		if n := countSpans([]*tracev1.ExportTraceServiceRequest{m}); n != 1 {
			t.Errorf("the https collector got %d spans, want 1", n)
		}
	default:
		t.Error("the https collector got no spans")
	}
}

func TestOTLPTimeoutBoundsAHangingCollector(t *testing.T) {
	srv := hangingCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "5000")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "150")
	o, err := NewOTLP(context.Background(), OTLPOptions{Endpoint: srv.URL, MetricInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = o.Shutdown(ctx)
	}()
	start := time.Now()
	err = o.spans.post(context.Background(), nil)
	d := time.Since(start)
	var re *retryableError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &re) {
		t.Errorf("an export to a hanging collector = %v, want a deadline to retry after", err)
	}
	if d < 100*time.Millisecond || d > 3*time.Second {
		t.Errorf("an export to a hanging collector returned after %v, want about the 150 ms of OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", d)
	}
}

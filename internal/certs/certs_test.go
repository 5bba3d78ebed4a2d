package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/certs/certstest"
)

// serve runs an HTTPS server on 127.0.0.1 with cfg and returns its URL.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }), TLSConfig: cfg}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String() + "/"
}

// get makes one request on a new connection and returns the serial of the
// server's certificate.
func get(t *testing.T, url string, cfg *tls.Config) (int64, error) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.TLS.PeerCertificates[0].SerialNumber.Int64(), nil
}

func TestRotationWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca := certstest.NewCA(t, "test CA")
	c1, k1 := ca.Issue(t, 101, false)
	certstest.Write(t, certFile, c1)
	certstest.Write(t, keyFile, k1)
	r, err := New(Options{CertFile: certFile, KeyFile: keyFile, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	url := serve(t, r.ServerConfig())
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	client := &tls.Config{RootCAs: roots}
	if serial, err := get(t, url, client); err != nil || serial != 101 {
		t.Fatalf("first certificate: serial %d, %v", serial, err)
	}
	if _, err := get(t, url, &tls.Config{RootCAs: x509.NewCertPool()}); err == nil {
		t.Fatal("a client that does not trust the test CA connected")
	}
	if _, err := get(t, url, &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Fatal("a TLS 1.1 client connected; the minimum is 1.2")
	}

	// A broken key is not taken: the previous certificate keeps serving.
	certstest.Write(t, keyFile, []byte("not a key"))
	time.Sleep(100 * time.Millisecond)
	if serial, err := get(t, url, client); err != nil || serial != 101 {
		t.Fatalf("after a broken write: serial %d, %v", serial, err)
	}

	c2, k2 := ca.Issue(t, 202, false)
	certstest.Write(t, certFile, c2)
	certstest.Write(t, keyFile, k2)
	deadline := time.Now().Add(5 * time.Second)
	for {
		serial, err := get(t, url, client)
		if err == nil && serial == 202 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotated certificate is not served: serial %d, %v", serial, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAdminClientCertificates(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "clients.pem")
	serverCA, clientCA, otherCA := certstest.NewCA(t, "server CA"), certstest.NewCA(t, "client CA"), certstest.NewCA(t, "other CA")
	c, k := serverCA.Issue(t, 1, false)
	certstest.Write(t, certFile, c)
	certstest.Write(t, keyFile, k)
	certstest.Write(t, caFile, clientCA.PEM)
	r, err := New(Options{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	url := serve(t, r.AdminConfig())
	dataURL := serve(t, r.ServerConfig())
	roots := x509.NewCertPool()
	roots.AddCert(serverCA.Cert)
	pair := func(ca *certstest.CA) []tls.Certificate {
		cp, kp := ca.Issue(t, 7, true)
		cert, err := tls.X509KeyPair(cp, kp)
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{cert}
	}
	tests := []struct {
		name  string
		url   string
		certs []tls.Certificate
		ok    bool
	}{
		{"admin: a client certificate from the client CA is accepted", url, pair(clientCA), true},
		{"admin: no client certificate is refused", url, nil, false},
		{"admin: a certificate from another CA is refused", url, pair(otherCA), false},
		{"admin: the server's own CA does not vouch for clients", url, pair(serverCA), false},
		{"data plane: no client certificate needed", dataURL, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := get(t, tc.url, &tls.Config{RootCAs: roots, Certificates: tc.certs})
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestNewRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "ca")
	c, k := ca.Issue(t, 1, false)
	_, k2 := ca.Issue(t, 2, false)
	certstest.Write(t, filepath.Join(dir, "c"), c)
	certstest.Write(t, filepath.Join(dir, "k"), k)
	certstest.Write(t, filepath.Join(dir, "k2"), k2)
	certstest.Write(t, filepath.Join(dir, "empty"), nil)
	for name, o := range map[string]Options{
		"missing files":       {CertFile: filepath.Join(dir, "nope"), KeyFile: filepath.Join(dir, "k")},
		"key of another cert": {CertFile: filepath.Join(dir, "c"), KeyFile: filepath.Join(dir, "k2")},
		"client CA not PEM":   {CertFile: filepath.Join(dir, "c"), KeyFile: filepath.Join(dir, "k"), ClientCAFile: filepath.Join(dir, "empty")},
		"no key file":         {CertFile: filepath.Join(dir, "c")},
	} {
		if r, err := New(o); err == nil {
			r.Close()
			t.Errorf("%s: accepted", name)
		}
	}
}

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

// TestSetChangesFilesAndSettingsLive: a configuration reload points the
// listeners at other files, turns client certificates on and off and raises
// the minimum version, from the next handshake, without a new listener; a
// Set whose files do not load changes nothing; HTTP/2 is still offered.
func TestSetChangesFilesAndSettingsLive(t *testing.T) {
	dir := t.TempDir()
	ca, clientCA := certstest.NewCA(t, "server CA"), certstest.NewCA(t, "client CA")
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		certstest.Write(t, p, data)
		return p
	}
	c1, k1 := ca.Issue(t, 1, false)
	c2, k2 := ca.Issue(t, 2, false)
	cert1, key1, cert2, key2 := file("1.crt", c1), file("1.key", k1), file("2.crt", c2), file("2.key", k2)
	clients := file("clients.pem", clientCA.PEM)
	r, err := New(Options{CertFile: cert1, KeyFile: key1, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	admin, data := serve(t, r.AdminConfig()), serve(t, r.ServerConfig())
	roots := ca.Pool()
	cp, kp := clientCA.Issue(t, 9, true)
	pair, err := tls.X509KeyPair(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, admin, &tls.Config{RootCAs: roots}); err != nil {
		t.Fatalf("admin without a client CA file needs no client certificate: %v", err)
	}

	if err := r.Set(Options{CertFile: cert2, KeyFile: key2, ClientCAFile: clients, MinVersion: tls.VersionTLS13, Interval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if serial, err := get(t, data, &tls.Config{RootCAs: roots}); err != nil || serial != 2 {
		t.Fatalf("after Set the data plane serves serial %d (%v), want 2", serial, err)
	}
	if _, err := get(t, data, &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("a TLS 1.2 client connected after the minimum went to 1.3")
	}
	if _, err := get(t, admin, &tls.Config{RootCAs: roots}); err == nil {
		t.Fatal("admin served a client without a certificate after a client CA file was set")
	}
	if serial, err := get(t, admin, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}); err != nil || serial != 2 {
		t.Fatalf("admin with a client certificate: serial %d, %v", serial, err)
	}

	// Files that do not load: refused, the current ones keep serving.
	if err := r.Set(Options{CertFile: cert1, KeyFile: key2, Interval: time.Hour}); err == nil {
		t.Fatal("a certificate with another certificate's key was taken")
	}
	if serial, err := get(t, data, &tls.Config{RootCAs: roots}); err != nil || serial != 2 {
		t.Fatalf("after a refused Set: serial %d, %v", serial, err)
	}

	// Back to no client certificates; HTTP/2 negotiated on both listeners.
	if err := r.Set(Options{CertFile: cert1, KeyFile: key1, Interval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{admin, data} {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}, Timeout: 5 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("%s after the client CA was removed: %v", url, err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 1 {
			t.Errorf("%s: %s, serial %d; want HTTP/2 and serial 1", url, resp.Proto, resp.TLS.PeerCertificates[0].SerialNumber.Int64())
		}
	}
}

package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/certs/certstest"
)

func TestServeOverTLSWithRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	dir := t.TempDir()
	ca, clientCA, otherCA := certstest.NewCA(t, "llmgate test CA"), certstest.NewCA(t, "admin clients CA"), certstest.NewCA(t, "other CA")
	certFile, keyFile, clientCAFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "clients.pem")
	c1, k1 := ca.Issue(t, 11, false)
	certstest.Write(t, certFile, c1)
	certstest.Write(t, keyFile, k1)
	certstest.Write(t, clientCAFile, clientCA.PEM)
	listen, admin := freeAddr(t), freeAddr(t)
	nc := nodeConfig{name: "gw-tls", mockURL: startMock(t), listen: listen, admin: admin, gossip: freeAddr(t),
		extra: fmt.Sprintf("tls: {cert_file: %s, key_file: %s, admin_client_ca_file: %s, reload_interval: 100ms}\n", certFile, keyFile, clientCAFile)}
	path := nc.write(t, dir)
	p := start(t, "serve", "--config", path)

	clientCert := func(ca *certstest.CA) []tls.Certificate {
		cp, kp := ca.Issue(t, 99, true)
		c, err := tls.X509KeyPair(cp, kp)
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{c}
	}
	// do sends one request on a new connection; it returns the status and
	// the serial number of the certificate the node presented.
	do := func(method, url, body string, cfg *tls.Config) (int, int64, error) {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sk-from-env")
		if strings.Contains(url, admin) {
			req.Header.Set("Authorization", "Bearer admin-t")
		}
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
		resp, err := c.Do(req)
		if err != nil {
			return 0, 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		var serial int64
		if resp.TLS != nil {
			serial = resp.TLS.PeerCertificates[0].SerialNumber.Int64()
		}
		return resp.StatusCode, serial, nil
	}
	trust := &tls.Config{RootCAs: ca.Pool()}
	waitFor(t, 30*time.Second, "the node answers /readyz over TLS", func() bool {
		code, _, err := do("GET", "https://"+listen+"/readyz", "", trust)
		return err == nil && code == 200
	})

	chat := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`
	if code, serial, err := do("POST", "https://"+listen+"/v1/chat/completions", chat, trust); err != nil || code != 200 || serial != 11 {
		t.Fatalf("chat over TLS: %d serial %d %v", code, serial, err)
	}
	if code, _, err := do("GET", "http://"+listen+"/readyz", "", nil); err == nil && code == 200 {
		t.Fatal("plain HTTP is served on the TLS listener")
	}
	if _, _, err := do("GET", "https://"+listen+"/readyz", "", &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS11}); err == nil {
		t.Fatal("a TLS 1.1 client was served")
	}
	adminTests := []struct {
		name  string
		certs []tls.Certificate
		ok    bool
	}{
		{"admin with a client certificate from the configured CA", clientCert(clientCA), true},
		{"admin without a client certificate", nil, false},
		{"admin with a client certificate from another CA", clientCert(otherCA), false},
	}
	for _, tc := range adminTests {
		code, _, err := do("GET", "https://"+admin+"/admin/cluster", "", &tls.Config{RootCAs: ca.Pool(), Certificates: tc.certs})
		if ok := err == nil && code == 200; ok != tc.ok {
			t.Errorf("%s: %d %v, want ok=%v", tc.name, code, err, tc.ok)
		}
	}

	// Rotation: new files, same process.
	c2, k2 := ca.Issue(t, 22, false)
	certstest.Write(t, certFile, c2)
	certstest.Write(t, keyFile, k2)
	waitFor(t, 20*time.Second, "the rotated certificate is served", func() bool {
		_, serial, err := do("GET", "https://"+listen+"/readyz", "", trust)
		return err == nil && serial == 22
	})
	if code, serial, err := do("GET", "https://"+admin+"/admin/cluster", "", &tls.Config{RootCAs: ca.Pool(), Certificates: clientCert(clientCA)}); err != nil || code != 200 || serial != 22 {
		t.Fatalf("admin after rotation: %d serial %d %v", code, serial, err)
	}

	// A reload points the node at other files, drops the admin client
	// certificates and raises the minimum version: applied from the next
	// handshake by the same process and listeners.
	reload := func(cfg *tls.Config) (int, error) {
		code, _, err := do("POST", "https://"+admin+"/admin/config/reload", "", cfg)
		return code, err
	}
	c3, k3 := ca.Issue(t, 33, false)
	otherCert, otherKey := filepath.Join(dir, "other.crt"), filepath.Join(dir, "other.key")
	certstest.Write(t, otherCert, c3)
	certstest.Write(t, otherKey, k3)
	nc.extra = fmt.Sprintf("tls: {cert_file: %s, key_file: %s, min_version: \"1.3\", reload_interval: 100ms}\n", otherCert, otherKey)
	nc.write(t, dir)
	if code, err := reload(&tls.Config{RootCAs: ca.Pool(), Certificates: clientCert(clientCA)}); err != nil || code != 200 {
		t.Fatalf("reload with other TLS files: %d %v", code, err)
	}
	if code, serial, err := do("POST", "https://"+listen+"/v1/chat/completions", chat, trust); err != nil || code != 200 || serial != 33 {
		t.Fatalf("chat after the TLS reload: %d serial %d %v", code, serial, err)
	}
	if code, serial, err := do("GET", "https://"+admin+"/admin/cluster", "", trust); err != nil || code != 200 || serial != 33 {
		t.Fatalf("admin without a client certificate once admin_client_ca_file is gone: %d serial %d %v", code, serial, err)
	}
	if _, _, err := do("GET", "https://"+listen+"/readyz", "", &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("a TLS 1.2 client was served after min_version went to 1.3")
	}
	// Files that do not exist: refused, the node serves what it had.
	nc.extra = fmt.Sprintf("tls: {cert_file: %s, key_file: %s, min_version: \"1.3\"}\n", filepath.Join(dir, "missing.crt"), otherKey)
	nc.write(t, dir)
	if code, err := reload(trust); err != nil || code != 400 {
		t.Fatalf("reload with a missing certificate file: %d %v, want 400", code, err)
	}
	// Turning TLS off needs a restart.
	nc.extra = ""
	nc.write(t, dir)
	if code, err := reload(trust); err != nil || code != 400 {
		t.Fatalf("reload turning TLS off: %d %v, want 400", code, err)
	}
	if code, serial, err := do("POST", "https://"+listen+"/v1/chat/completions", chat, trust); err != nil || code != 200 || serial != 33 {
		t.Fatalf("chat after two refused reloads: %d serial %d %v", code, serial, err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		t.Fatalf("the node exited during rotation: %v", err)
	default:
	}
}

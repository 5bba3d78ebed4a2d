package certs

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Reloader.
type Options struct {
	// CertFile and KeyFile are the PEM certificate (chain) and private key
	// the listeners serve. Both are required.
	CertFile, KeyFile string
	// ClientCAFile, when set, is a PEM bundle: AdminConfig then requires
	// clients to present a certificate signed by one of its CAs.
	ClientCAFile string
	// MinVersion is the lowest TLS version accepted; default TLS 1.2.
	MinVersion uint16
	// Interval is how often the files are checked for changes; default 10s.
	Interval time.Duration
	Logger   *slog.Logger
}

// Reloader serves the current certificate and client CAs, re-reading the
// files when their size or modification time changes.
type Reloader struct {
	opts     Options
	log      *slog.Logger
	cert     atomic.Pointer[tls.Certificate]
	clientCA atomic.Pointer[x509.CertPool] // nil without ClientCAFile

	mu     sync.Mutex // serialises loads; guards stamps
	stamps string     // size and mtime of the files last tried

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// New loads the files (an error if they cannot be read or do not match) and
// starts watching them until Close.
func New(opts Options) (*Reloader, error) {
	if opts.CertFile == "" || opts.KeyFile == "" {
		return nil, errors.New("certs: a certificate file and a key file are required")
	}
	opts.MinVersion = cmp.Or(opts.MinVersion, tls.VersionTLS12)
	opts.Interval = cmp.Or(opts.Interval, 10*time.Second)
	r := &Reloader{opts: opts, log: cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)), stop: make(chan struct{}), done: make(chan struct{})}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	go r.watch()
	return r, nil
}

// Reload re-reads the files now. On an error the previous certificate and
// CAs stay in use.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stamps = r.stamp()
	return r.load()
}

func (r *Reloader) load() error {
	cert, err := tls.LoadX509KeyPair(r.opts.CertFile, r.opts.KeyFile)
	if err != nil {
		return fmt.Errorf("certs: loading %s and %s: %w", r.opts.CertFile, r.opts.KeyFile, err)
	}
	var pool *x509.CertPool
	if r.opts.ClientCAFile != "" {
		if pool, err = LoadPool(r.opts.ClientCAFile, false); err != nil {
			return err
		}
	}
	r.cert.Store(&cert)
	if pool != nil {
		r.clientCA.Store(pool)
	}
	return nil
}

// stamp describes the files' current size and modification time; a change
// means something was written (a Kubernetes secret update swaps a symlink,
// which stat follows).
func (r *Reloader) stamp() string {
	s := ""
	for _, f := range []string{r.opts.CertFile, r.opts.KeyFile, r.opts.ClientCAFile} {
		if f == "" {
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			s += f + ":missing;"
			continue
		}
		s += fmt.Sprintf("%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return s
}

func (r *Reloader) watch() {
	defer close(r.done)
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		r.mu.Lock()
		if st := r.stamp(); st != r.stamps {
			r.stamps = st
			if err := r.load(); err != nil {
				// Tried once per change of the files: a half-written pair is
				// retried when the writer finishes (the stamp changes again).
				r.log.Error("TLS files changed but cannot be loaded; still serving the previous certificate", "err", err)
			} else {
				r.log.Info("TLS certificate reloaded", "cert_file", r.opts.CertFile, "not_after", r.notAfter())
			}
		}
		r.mu.Unlock()
	}
}

func (r *Reloader) notAfter() time.Time {
	c := r.cert.Load()
	if c == nil || c.Leaf == nil {
		return time.Time{}
	}
	return c.Leaf.NotAfter
}

// Close stops watching the files.
func (r *Reloader) Close() {
	r.once.Do(func() {
		close(r.stop)
		<-r.done
	})
}

// ServerConfig is the TLS configuration of the data-plane listener.
func (r *Reloader) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: r.opts.MinVersion,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.cert.Load(), nil
		},
	}
}

// AdminConfig is the TLS configuration of the admin listener: the same
// certificate and, with a client CA file, a verified client certificate
// required of every client.
func (r *Reloader) AdminConfig() *tls.Config {
	cfg := r.ServerConfig()
	if r.opts.ClientCAFile == "" {
		return cfg
	}
	base := cfg.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = r.clientCA.Load()
		return c, nil
	}
	return cfg
}

// LoadPool reads a PEM bundle of CA certificates. With system set, they are
// added to a copy of the system's roots (for backends with a private CA
// among public ones); else the pool holds them alone (client CAs).
func LoadPool(file string, system bool) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("certs: reading CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if system {
		if sp, err := x509.SystemCertPool(); err == nil {
			pool = sp
		}
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("certs: %s holds no PEM certificate", file)
	}
	return pool, nil
}

// ParseVersion maps "1.2" and "1.3" to TLS versions; "" is 1.2.
func ParseVersion(v string) (uint16, error) {
	switch v {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("TLS version %q is not 1.2 or 1.3", v)
}

// Loaded reports the current certificate's leaf, for logs and tests.
func (r *Reloader) Loaded() *x509.Certificate {
	if c := r.cert.Load(); c != nil {
		return c.Leaf
	}
	return nil
}

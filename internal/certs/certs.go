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
// files when their size or modification time changes. Set points it at
// other files and settings (a configuration reload).
type Reloader struct {
	log        *slog.Logger
	cert       atomic.Pointer[tls.Certificate]
	clientCA   atomic.Pointer[x509.CertPool] // nil: no client certificate asked for
	minVersion atomic.Uint32
	interval   atomic.Int64 // how often the files are checked, in ns

	mu     sync.Mutex // serialises loads; guards opts and stamps
	opts   Options
	stamps string // size and mtime of the files last tried

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
	r := &Reloader{log: cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)), stop: make(chan struct{}), done: make(chan struct{})}
	if err := r.Set(opts); err != nil {
		return nil, err
	}
	go r.watch()
	return r, nil
}

// Set loads the files opts names and, when they load, serves them from the
// next handshake on with opts' client CA (none when empty), minimum version
// and check interval; the files are watched from then on. On an error
// nothing changes. Logger is ignored.
func (r *Reloader) Set(opts Options) error {
	if opts.CertFile == "" || opts.KeyFile == "" {
		return errors.New("certs: a certificate file and a key file are required")
	}
	opts.MinVersion = cmp.Or(opts.MinVersion, tls.VersionTLS12)
	opts.Interval = cmp.Or(opts.Interval, 10*time.Second)
	r.mu.Lock()
	defer r.mu.Unlock()
	cert, pool, err := loadFiles(opts)
	if err != nil {
		return err
	}
	r.opts = opts
	r.stamps = r.stamp()
	r.cert.Store(cert)
	r.clientCA.Store(pool)
	r.minVersion.Store(uint32(opts.MinVersion))
	r.interval.Store(int64(opts.Interval))
	return nil
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
	cert, pool, err := loadFiles(r.opts)
	if err != nil {
		return err
	}
	r.cert.Store(cert)
	if pool != nil {
		r.clientCA.Store(pool)
	}
	return nil
}

// loadFiles reads the key pair and the client CA bundle (nil without one).
func loadFiles(opts Options) (*tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: loading %s and %s: %w", opts.CertFile, opts.KeyFile, err)
	}
	var pool *x509.CertPool
	if opts.ClientCAFile != "" {
		if pool, err = LoadPool(opts.ClientCAFile, false); err != nil {
			return nil, nil, err
		}
	}
	return &cert, pool, nil
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
	every := time.Duration(r.interval.Load())
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		if d := time.Duration(r.interval.Load()); d != every { // changed by Set
			every = d
			t.Reset(d)
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

// nextProtos are the protocols both listeners offer (net/http's HTTP/2 and
// HTTP/1.1): each handshake's configuration must name them itself.
var nextProtos = []string{"h2", "http/1.1"}

// ServerConfig is the TLS configuration of the data-plane listener. Each
// handshake gets the current certificate and minimum version.
func (r *Reloader) ServerConfig() *tls.Config { return r.config(false) }

// AdminConfig is the TLS configuration of the admin listener: the same
// certificate and, while a client CA file is set, a verified client
// certificate required of every client.
func (r *Reloader) AdminConfig() *tls.Config { return r.config(true) }

func (r *Reloader) config(admin bool) *tls.Config {
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.cert.Load(), nil }
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     nextProtos,
		GetCertificate: getCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := &tls.Config{MinVersion: uint16(r.minVersion.Load()), NextProtos: nextProtos, GetCertificate: getCert}
			if pool := r.clientCA.Load(); admin && pool != nil {
				c.ClientAuth = tls.RequireAndVerifyClientCert
				c.ClientCAs = pool
			}
			return c, nil
		},
	}
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

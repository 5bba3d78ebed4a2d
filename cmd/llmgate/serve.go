package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/llmgate/llmgate/cluster"
	"github.com/llmgate/llmgate/console"
	"github.com/llmgate/llmgate/index"
	"github.com/llmgate/llmgate/internal/certs"
	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/edge"
	"github.com/llmgate/llmgate/internal/mock"
	"github.com/llmgate/llmgate/internal/space"
	"github.com/llmgate/llmgate/node"
	"github.com/llmgate/llmgate/telemetry"
)

// devKey is the consumer key of the built-in configuration (no --config), for
// trying the gateway on one machine. LLMGATE_DEV_KEY overrides it.
const devKey = "sk-llmgate-dev"

type serveFlags struct {
	config, listen, adminListen, gossip, join, dataDir, nodeName, upstream, upstreamKey string
	// cpuProfile names a file that receives a CPU profile of the whole run.
	cpuProfile string
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "", "configuration file (YAML); without it, built-in defaults")
	fs.StringVar(&f.listen, "listen", "", "data-plane address host:port (overrides listen)")
	fs.StringVar(&f.adminListen, "admin-listen", "", "admin address host:port (overrides admin_listen)")
	fs.StringVar(&f.gossip, "gossip", "", "gossip bind address host:port (overrides cluster.gossip)")
	fs.StringVar(&f.join, "join", "", "comma-separated seed gossip addresses (overrides cluster.join)")
	fs.StringVar(&f.dataDir, "data-dir", "", "data directory (overrides node.data_dir)")
	fs.StringVar(&f.nodeName, "node-name", "", "unique node name (overrides node.name)")
	fs.StringVar(&f.upstream, "upstream", "", "without --config: the backend URL (a path ending in /v1 means an OpenAI-style API, else Azure)")
	fs.StringVar(&f.upstreamKey, "upstream-key", os.Getenv("LLMGATE_UPSTREAM_KEY"), "with --upstream: the backend's API key (default $LLMGATE_UPSTREAM_KEY)")
	fs.StringVar(&f.cpuProfile, "cpu-profile", "", "write a CPU profile (pprof) of the whole run to `FILE`, completed at shutdown")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	if f.cpuProfile != "" {
		stop, err := startCPUProfile(f.cpuProfile)
		if err != nil {
			return fmt.Errorf("serve: --cpu-profile: %w", err)
		}
		defer stop()
	}

	cfg, err := serveConfig(f)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	lw := newLogWriter(stderr, 100*time.Millisecond)
	defer lw.Close()
	logger, format, err := newLogger(cfg.Log, lw, level)
	if err != nil {
		return err
	}
	if f.config == "" && f.upstream == "" {
		stopMock, url, err := startBuiltinMock()
		if err != nil {
			return err
		}
		defer stopMock()
		cfg.Backends[0].URL = url
		// The built-in key is public (it is in the README); one chosen
		// through LLMGATE_DEV_KEY is a secret and never logged.
		key := "from LLMGATE_DEV_KEY (not shown)"
		if cfg.Consumers[0].Keys[0] == devKey {
			key = devKey
		}
		logger.Info("no --config and no --upstream: serving the built-in mock upstream", "url", url, "consumer_key", key)
	}

	n, err := startNode(cfg, logger)
	if err != nil {
		return err
	}
	n.level, n.format = level, format
	if f.config != "" {
		n.reread = func() (*config.Config, error) { return serveConfig(f) }
	}
	logger.Info("llmgate node serving", "node", cfg.Node.Name, "listen", n.dataAddr, "admin_listen", n.adminAddr, "data_dir", cfg.Node.DataDir, "config_hash", cfg.Hash(), "version", version)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
serving:
	for {
		select {
		case <-ctx.Done():
			// Not ready first, still serving: load balancers and Kubernetes see
			// /readyz fail and stop sending before the listeners close.
			drain := n.current().cfg.Server.DrainPeriod
			n.draining.Store(true) // before: a reload from here on installs not ready
			n.current().api.SetReady(false)
			logger.Info("draining: /readyz answers 503, listeners close after the drain period", "node", cfg.Node.Name, "drain_period", drain)
			time.Sleep(drain)
			logger.Info("shutting down", "node", cfg.Node.Name)
			break serving
		case err := <-n.errc:
			_ = n.stop(context.Background())
			return fmt.Errorf("serving: %w", err)
		case <-hup:
			// The outcome is logged and counted by reload itself.
			_, _ = n.reload(ctx)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), n.current().cfg.Server.ShutdownTimeout)
	defer cancel()
	return n.stop(sctx)
}

// serveConfig loads the file (or the built-in defaults), applies the flags,
// fills defaults and validates.
func serveConfig(f serveFlags) (*config.Config, error) {
	var cfg *config.Config
	if f.config != "" {
		c, err := config.Load(f.config)
		if err != nil {
			return nil, err
		}
		if f.upstream != "" {
			return nil, errors.New("--upstream applies only without --config (backends come from the file)")
		}
		cfg = c
	} else {
		cfg = builtinConfig(f.upstream)
		if f.upstream != "" {
			// Sent to the backend in api-key (azure) or Authorization: Bearer (openai).
			cfg.Backends[0].APIKey = f.upstreamKey
		}
	}
	if f.listen != "" {
		cfg.Listen = f.listen
	}
	if f.adminListen != "" {
		cfg.AdminListen = f.adminListen
	}
	if f.gossip != "" {
		cfg.Cluster.Gossip = f.gossip
	}
	if f.join != "" {
		cfg.Cluster.Join = strings.Split(f.join, ",")
	}
	if f.dataDir != "" {
		cfg.Node.DataDir = f.dataDir
	}
	if f.nodeName != "" {
		cfg.Node.Name = f.nodeName
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		if f.config != "" {
			return nil, fmt.Errorf("config %s: %w", f.config, err)
		}
		return nil, fmt.Errorf("configuration: %w", err)
	}
	return cfg, nil
}

// builtinConfig is the configuration used without --config: one backend
// serving the usual deployments and one consumer with the development key.
func builtinConfig(upstream string) *config.Config {
	kind := config.KindAzure
	if strings.HasSuffix(strings.TrimRight(upstream, "/"), "/v1") {
		kind = config.KindOpenAI
	}
	if upstream == "" {
		kind = config.KindOpenAI // the built-in mock, filled in once it listens
		upstream = "http://127.0.0.1:1/v1"
	}
	key := devKey
	if k := os.Getenv("LLMGATE_DEV_KEY"); k != "" {
		key = k
	}
	deployments := []string{"gpt-4o", "gpt-4o-mini", "text-embedding-3-small"}
	routes := map[string]config.Route{}
	for _, d := range deployments {
		routes[d] = config.Route{Pool: [][]string{{"upstream"}}}
	}
	cfg := &config.Config{
		Backends:  []config.Backend{{Name: "upstream", Kind: kind, URL: upstream, Deployments: deployments}},
		Routes:    routes,
		Consumers: []config.Consumer{{Name: "dev", Keys: []string{key}}},
	}
	cfg.Cache.Enabled = true
	return cfg
}

func startBuiltinMock() (stop func(), url string, err error) {
	base, stop, err := serveLoopback(mock.New(mock.Options{Latency: 20 * time.Millisecond, Name: "builtin-mock"}))
	if err != nil {
		return nil, "", fmt.Errorf("starting the built-in mock upstream: %w", err)
	}
	return stop, base + "/v1", nil
}

// newLogger builds the logger; its level is lv's and its format the
// returned logFormat's, which a reload changes.
func newLogger(lc config.Log, w io.Writer, lv *slog.LevelVar) (*slog.Logger, *logFormat, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(lc.Level)); err != nil {
		return nil, nil, fmt.Errorf("log.level: %w", err)
	}
	lv.Set(level)
	f := newLogFormat(w, lv, lc.Format)
	return slog.New(f.handler()), f, nil
}

// runningNode is one gateway node with its listeners and servers.
type runningNode struct {
	cfg       *config.Config // what it started with; current().cfg is what it runs
	log       *slog.Logger
	reg       *prometheus.Registry
	gen       atomic.Pointer[generation] // what new requests are served by
	data      *http.Server
	admin     *http.Server
	dataAddr  string
	adminAddr string
	unlock    func()
	state     *state
	disk      *space.Watcher // the data disk's free space
	cluster   *cluster.Cluster
	errc      chan error
	stopOnce  sync.Once

	// reloadMu serialises reloads and stop.
	reloadMu sync.Mutex
	stopped  atomic.Bool // set by stop, under reloadMu
	draining atomic.Bool // set when the node starts draining
	// retiring counts the replaced generations not yet released; abandon
	// ends when stop gives up waiting for their requests.
	retiring    sync.WaitGroup
	abandon     context.Context
	abandonStop context.CancelFunc
	// reread loads the configuration again as serve did (file and flags);
	// nil when the node runs on built-in defaults.
	reread func() (*config.Config, error)
	level  *slog.LevelVar // nil: the log level is not reloadable (demo)
	format *logFormat     // nil: the log format is not reloadable (demo)
	// connLimits cap both listeners' connections (server.max_connections).
	connLimits []*edge.Limited
	reloads    *prometheus.CounterVec
	tokens     map[string]node.TokenSource // Entra ID token sources of backends with auth: entra, fixed at start
	// certs serves both listeners' certificate, re-read when its files
	// change; nil without tls.cert_file.
	certs *certs.Reloader
}

// startNode opens the data directory, binds both listeners and starts serving.
// Any failure leaves nothing running.
func startNode(cfg *config.Config, logger *slog.Logger) (_ *runningNode, err error) {
	var undo []func() // releases what was acquired, if a later step fails
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	unlock, err := lockDataDir(cfg.Node.DataDir)
	if err != nil {
		return nil, err
	}
	undo = append(undo, unlock)
	spaceOpts := space.Options{Dir: cfg.Node.DataDir, DBDir: filepath.Join(cfg.Node.DataDir, "db"), Reserve: cfg.Node.DiskReserveBytes, Logger: logger}
	if _, err := space.Prepare(spaceOpts); err != nil {
		return nil, err
	}
	// The cache reports its changes before the cluster exists: they go
	// nowhere until it starts (a peer catches up on them when it joins).
	var replicas atomic.Pointer[cluster.Cluster]
	replicate := node.ReplicateTo(func(change []byte) { replicas.Load().Replicate(change) })
	st, err := openState(cfg, logger, func(ch index.Change) {
		// A node without live peers encodes nothing (an entry with its
		// vector and answer, per store): a peer catches up when it comes.
		if c := replicas.Load(); c != nil && c.Replicating() {
			replicate(ch)
		}
	})
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { _ = st.close() })
	dataLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	undo = append(undo, func() { dataLn.Close() })
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		return nil, fmt.Errorf("admin_listen %s: %w", cfg.AdminListen, err)
	}
	undo = append(undo, func() { adminLn.Close() })

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	secret, err := base64.StdEncoding.DecodeString(cfg.Cluster.SecretKey) // validated
	if err != nil {
		return nil, fmt.Errorf("cluster.secret_key: %w", err)
	}
	cl, err := cluster.Start(cluster.Options{
		Name: cfg.Node.Name, Bind: cfg.Cluster.Gossip, Join: cfg.Cluster.Join, SecretKey: secret, ConfigHash: cfg.Hash(),
		Logger: logger, Registerer: reg, Quota: st.clusterQuota(), Cache: st.clusterCache(),
	})
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = cl.Close(ctx)
	})
	replicas.Store(cl)
	backendTokens, stopTokens, err := newBackendTokens(cfg, logger)
	if err != nil {
		return nil, err
	}
	undo = append(undo, stopTokens)
	spaceOpts.Registry = reg
	disk, err := space.Start(spaceOpts)
	if err != nil {
		return nil, err
	}
	undo = append(undo, disk.Close)
	n := &runningNode{
		cfg: cfg, log: logger, reg: reg, disk: disk,
		dataAddr: dataLn.Addr().String(), adminAddr: adminLn.Addr().String(),
		unlock: unlock, state: st, cluster: cl, errc: make(chan error, 2),
		tokens: backendTokens,
	}
	n.abandon, n.abandonStop = context.WithCancel(context.Background())
	undo = append(undo, n.abandonStop)
	st.stopIdentity = stopTokens // st.close (on failure or stop) ends their fetches
	if err := telemetry.RegisterHeadroom(reg, st.limiter); err != nil {
		return nil, err
	}
	if n.reloads, err = newReloadMetric(reg); err != nil {
		return nil, err
	}
	gen, err := n.build(cfg, nil)
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { n.release(gen) })
	n.install(gen)
	errLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	newServer := func(h http.Handler) *http.Server {
		return edge.NewServer(h, edge.Options{
			ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout, BodyReadTimeout: cfg.Server.BodyReadTimeout,
			IdleTimeout: cfg.Server.IdleTimeout, ErrorLog: errLog,
		})
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_connections_refused_total",
		Help: "Connections answered 503 and closed because the listener was at server.max_connections.",
	}, []string{"listener"})
	reg.MustRegister(refused)
	dataLim := edge.Limit(dataLn, cfg.Server.MaxConnections, refused.WithLabelValues("data").Inc)
	adminLim := edge.Limit(adminLn, cfg.Server.MaxConnections, refused.WithLabelValues("admin").Inc)
	dataLn, adminLn = dataLim, adminLim
	n.connLimits = []*edge.Limited{dataLim, adminLim}
	// The console's files do not change with a reload; the admin API under them does.
	n.data, n.admin = newServer(genHandler{n: n}), newServer(console.Mount(genHandler{n: n, admin: true}))
	if cfg.TLS.CertFile != "" {
		opts, err := certOptions(cfg.TLS)
		if err != nil {
			return nil, err
		}
		opts.Logger = logger
		n.certs, err = certs.New(opts)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		undo = append(undo, n.certs.Close)
		n.data.TLSConfig, n.admin.TLSConfig = n.certs.ServerConfig(), n.certs.AdminConfig()
	}
	for _, s := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{n.data, dataLn}, {n.admin, adminLn}} {
		go func() {
			serve := s.srv.Serve
			if s.srv.TLSConfig != nil {
				// The certificate comes from TLSConfig.GetCertificate.
				serve = func(ln net.Listener) error { return s.srv.ServeTLS(ln, "", "") }
			}
			if err := serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.errc <- err
			}
		}()
	}
	return n, nil
}

// certOptions are the listeners' TLS settings of tc (cert_file set).
func certOptions(tc config.TLS) (certs.Options, error) {
	minVersion, err := certs.ParseVersion(tc.MinVersion) // validated
	if err != nil {
		return certs.Options{}, fmt.Errorf("tls.min_version: %w", err)
	}
	return certs.Options{
		CertFile: tc.CertFile, KeyFile: tc.KeyFile, ClientCAFile: tc.AdminClientCAFile,
		MinVersion: minVersion, Interval: tc.ReloadInterval,
	}, nil
}

// observers are what receives each finished request in a generation: the
// per-consumer metrics (of cfg's consumers and routes), the usage history,
// and the request log when telemetry.log_requests is on (capturing content
// per telemetry.capture_content). The OTLP export is added by build.
func observers(cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer, st *state) (telemetry.Observers, error) {
	consumers := make([]string, len(cfg.Consumers))
	for i, c := range cfg.Consumers {
		consumers[i] = c.Name
	}
	routes := make([]string, 0, len(cfg.Routes))
	for name := range cfg.Routes {
		routes = append(routes, name)
	}
	m, err := telemetry.NewMetrics(reg, consumers, routes)
	if err != nil {
		return nil, err
	}
	obs := telemetry.Observers{m}
	if st.history != nil {
		obs = append(obs, st.history)
	}
	if t := cfg.Telemetry; t.LogRequests == nil || *t.LogRequests {
		capture := 0
		if t.CaptureContent {
			capture = t.CaptureBytes
		}
		obs = append(obs, telemetry.NewRequestLog(logger, capture))
	}
	return obs, nil
}

// stop drains the node: not ready first, then in-flight requests finish
// (streams included) until ctx ends, then everything closes.
func (n *runningNode) stop(ctx context.Context) error {
	var err error
	n.stopOnce.Do(func() {
		n.reloadMu.Lock() // no reload from here on
		n.stopped.Store(true)
		defer n.reloadMu.Unlock()
		n.current().api.SetReady(false)
		err = errors.Join(n.data.Shutdown(ctx), n.admin.Shutdown(ctx))
		if err != nil {
			_ = n.data.Close()
			_ = n.admin.Close()
		}
		// Every generation is released once its requests are done: cache
		// stores finish, pending spans and metrics go out (within ctx).
		n.retire(n.current())
		released := make(chan struct{})
		go func() { n.retiring.Wait(); close(released) }()
		select {
		case <-released:
		case <-ctx.Done():
			n.abandonStop()
			<-released
		}
		n.abandonStop()
		// Leave before the state closes: the cluster's workers call into it.
		if cerr := n.cluster.Close(ctx); cerr != nil {
			n.log.Warn("leaving the cluster", "err", cerr)
		}
		n.disk.Close()
		if cerr := n.state.close(); cerr != nil {
			n.log.Error("closing storage", "err", cerr)
			err = errors.Join(err, cerr)
		}
		if n.certs != nil {
			n.certs.Close()
		}
		n.unlock()
	})
	return err
}

// lockDataDir creates the data directory and takes an exclusive lock on it:
// two nodes must never share one directory.
func lockDataDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, "llmgate.lock")
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fh.Close()
		return nil, fmt.Errorf("data directory %s is in use by another process: %w", dir, err)
	}
	return func() {
		_ = syscall.Flock(int(fh.Fd()), syscall.LOCK_UN)
		fh.Close()
	}, nil
}

// startCPUProfile profiles the process into path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

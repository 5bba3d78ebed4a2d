package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// QuotaState is token accounting as the cluster sees it. Payloads are opaque
// here: whatever Outgoing returns on one node is given to Merge on the others.
// Merge must be idempotent and order-free (messages are duplicated, reordered
// and lost).
type QuotaState interface {
	// Outgoing returns this node's news since the previous call (full=false)
	// or its whole state (full=true, for push/pull): packets to send best
	// effort, each at most maxPacket bytes, and payloads to send reliably.
	Outgoing(ctx context.Context, full bool, maxPacket int) (packets, reliable [][]byte, err error)
	Merge(ctx context.Context, payload []byte) error
	// SetPeers names the other live members.
	SetPeers(names []string)
}

// Digest summarises a cache's contents in 256 buckets; equal digests mean
// (with high probability) equal entries and tombstones in that bucket.
type Digest [256]uint64

// Version is one entry or tombstone of a cache, for catch-up.
type Version struct {
	ID        string
	CreatedAt int64 // Unix nanoseconds
	Deleted   bool
}

// CacheState is the semantic cache as the cluster sees it.
type CacheState interface {
	// Apply applies a batch of changes from another node (what Replicate
	// was given there, concatenated, or what Export returned there).
	Apply(ctx context.Context, payload []byte) error
	Digest(ctx context.Context) (Digest, error)
	Versions(ctx context.Context, buckets []uint8) ([]Version, error)
	// Export returns the live entries with these IDs as a payload for Apply.
	Export(ctx context.Context, ids []string) ([]byte, error)
	// Delete applies tombstones learned from a peer: each Version's
	// CreatedAt is the time of the delete on its origin, so that every node
	// keeps the tombstone equally long.
	Delete(ctx context.Context, tombstones []Version) error
}

// Options configure a Cluster. Zero fields get the defaults named on them.
type Options struct {
	// Name is this node's unique name in the cluster (required).
	Name string
	// ConfigHash is announced to the other members (see SetConfigHash).
	ConfigHash string
	// Bind is the gossip host:port (UDP and TCP). Port 0 picks a free one.
	Bind string
	// Join are seed gossip addresses. Joining retries with backoff until one
	// answers; until then the node serves alone.
	Join []string
	// SecretKey (16, 24 or 32 bytes) encrypts all cluster traffic with
	// AES-GCM. Without it Bind must be a loopback address.
	SecretKey []byte
	Logger    *slog.Logger
	// Registerer receives the cluster metrics (nil: none).
	Registerer prometheus.Registerer
	// Quota and Cache are exchanged with the other nodes; nil = not shared.
	Quota QuotaState
	Cache CacheState

	// FlushInterval is how often quota news goes out (default 50ms): with
	// the receivers' processing it bounds how stale one node's view of the
	// others' usage is.
	FlushInterval time.Duration
	// ReplicateDelay is how long cache changes are gathered into one batch
	// (default 5ms).
	ReplicateDelay time.Duration
	// SyncInterval is how often the cache is reconciled with one random
	// peer (default 30s); a peer that joins is reconciled at once.
	SyncInterval time.Duration
	// PushPullInterval is memberlist's full state exchange (default 10s).
	PushPullInterval time.Duration
	// JoinBackoffMax caps the wait between join attempts (default 30s).
	JoinBackoffMax time.Duration
	// Timeout bounds one cluster operation: a TCP send, a local apply, a
	// catch-up step waiting for its answer (default 5s).
	Timeout time.Duration
	// versionsPerChunk overrides how many versions one catch-up message
	// carries (tests).
	versionsPerChunk int

	// Fast uses memberlist's loopback timings (failure detection in about
	// 2 s instead of 5 to 7 s). Default: chosen from Bind (loopback = fast).
	Fast *bool
}

// Member is one node as this node sees it.
type Member struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	State string `json:"state"` // alive, suspect, dead or left
	// ConfigHash is the hash of the configuration the member runs (see
	// SetConfigHash), so that drift between nodes shows; "" if unknown.
	ConfigHash string `json:"config_hash,omitempty"`
}

// Cluster is this node's membership and its exchanges with the others.
type Cluster struct {
	opts Options
	log  *slog.Logger
	ml   *memberlist.Memberlist
	m    *metrics

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	events eventQueue
	peers  atomic.Pointer[[]*peer] // live peers, published by run
	askMem chan chan []Member
	meta   atomic.Pointer[string] // this node's config hash, its memberlist metadata
	addr   string                 // the advertised gossip address, set at Start

	repl     chan []byte // cache changes to replicate
	quotaIn  chan []byte
	applyIn  chan []byte
	serveIn  chan inbound
	sessions sessionTable
	// aloneTicks counts the flush ticks skipped while the node has no live
	// peer (see flushQuota); run's goroutine alone touches it.
	aloneTicks int

	closeOnce sync.Once
}

type inbound struct {
	k    kind
	from string
	body []byte
}

// Start binds the gossip address, starts membership and begins joining the
// seeds in the background. It returns once this node serves (alone, if no
// seed answered yet).
func Start(opts Options) (*Cluster, error) {
	if opts.Name == "" {
		return nil, errors.New("cluster: a node name is required")
	}
	if len(opts.Name) > maxNameLen {
		return nil, fmt.Errorf("cluster: node name %q is longer than %d bytes", opts.Name, maxNameLen)
	}
	host, portStr, err := net.SplitHostPort(opts.Bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip address %q: %w", opts.Bind, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("cluster: gossip address %q: bad port", opts.Bind)
	}
	ip := net.ParseIP(host)
	if host == "localhost" {
		ip = net.IPv4(127, 0, 0, 1)
	}
	if ip == nil {
		return nil, fmt.Errorf("cluster: gossip address %q: host must be an IP address", opts.Bind)
	}
	if len(opts.SecretKey) == 0 && !ip.IsLoopback() {
		return nil, fmt.Errorf("cluster: refusing to gossip unencrypted on %s: set cluster.secret_key", opts.Bind)
	}
	opts.FlushInterval = cmp.Or(opts.FlushInterval, 50*time.Millisecond)
	opts.ReplicateDelay = cmp.Or(opts.ReplicateDelay, 5*time.Millisecond)
	opts.SyncInterval = cmp.Or(opts.SyncInterval, 30*time.Second)
	opts.PushPullInterval = cmp.Or(opts.PushPullInterval, 10*time.Second)
	opts.JoinBackoffMax = cmp.Or(opts.JoinBackoffMax, 30*time.Second)
	opts.Timeout = cmp.Or(opts.Timeout, 5*time.Second)
	opts.versionsPerChunk = cmp.Or(opts.versionsPerChunk, versionsChunk/32)
	logger := cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)).With("component", "cluster")

	fast := ip.IsLoopback()
	if opts.Fast != nil {
		fast = *opts.Fast
	}
	mc := memberlist.DefaultLANConfig()
	if fast {
		mc = memberlist.DefaultLocalConfig()
	}
	mc.Name = opts.Name
	mc.BindAddr = ip.String()
	mc.BindPort = port
	mc.AdvertisePort = port
	if !ip.IsUnspecified() {
		mc.AdvertiseAddr = ip.String()
	}
	mc.SecretKey = opts.SecretKey
	mc.Label = "llmgate"
	mc.PushPullInterval = opts.PushPullInterval
	mc.TCPTimeout = opts.Timeout
	// Entries are mostly float vectors: compression costs CPU for little.
	mc.EnableCompression = false
	mc.Logger = log.New(logWriter{logger}, "", 0)

	ctx, cancel := context.WithCancel(context.Background())
	c := &Cluster{
		opts:    opts,
		log:     logger,
		ctx:     ctx,
		cancel:  cancel,
		askMem:  make(chan chan []Member),
		repl:    make(chan []byte, 4096),
		quotaIn: make(chan []byte, 1024),
		applyIn: make(chan []byte, 64),
		serveIn: make(chan inbound, 64),
	}
	c.events.init()
	c.sessions.m = map[uint64]chan inbound{}
	c.m, err = newMetrics(opts.Registerer)
	if err != nil {
		cancel()
		return nil, err
	}
	c.meta.Store(&opts.ConfigHash)
	mc.Delegate = delegate{c}
	mc.Events = events{c}
	ml, err := memberlist.Create(mc)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cluster: gossip on %s: %w", opts.Bind, err)
	}
	c.ml = ml
	// Read once: memberlist rewrites its local node (metadata updates)
	// while LocalNode's callers would read it.
	local := ml.LocalNode()
	c.addr = net.JoinHostPort(local.Addr.String(), strconv.Itoa(int(local.Port)))
	empty := []*peer{}
	c.peers.Store(&empty)

	c.spawn(c.run)
	c.spawn(c.replicate)
	if opts.Quota != nil {
		c.spawn(func() { c.drain(c.quotaIn, opts.Quota.Merge, "merging quota news", slog.LevelDebug) })
	}
	if opts.Cache != nil {
		c.spawn(func() { c.drain(c.applyIn, opts.Cache.Apply, "applying replicated cache changes", slog.LevelWarn) })
	}
	c.spawn(c.serve)
	c.spawn(c.join)
	logger.Info("cluster member started", "node", opts.Name, "gossip", c.Addr(), "seeds", opts.Join, "encrypted", len(opts.SecretKey) > 0)
	return c, nil
}

func (c *Cluster) spawn(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// Addr returns the gossip address this node advertises.
func (c *Cluster) Addr() string { return c.addr }

// Name returns this node's name.
func (c *Cluster) Name() string { return c.opts.Name }

// Close leaves the cluster gracefully (the others see "left", not "dead"),
// stops every exchange and releases the gossip address.
func (c *Cluster) Close(ctx context.Context) error {
	var err error
	c.closeOnce.Do(func() {
		timeout := time.Second
		if d, ok := ctx.Deadline(); ok {
			timeout = min(max(time.Until(d)/2, 100*time.Millisecond), 2*time.Second)
		}
		// memberlist's leave event does not say whether a node left or died:
		// tell the peers first, best effort.
		bye := frame(kindBye, c.opts.Name, nil)
		for _, p := range *c.peers.Load() {
			_ = c.ml.SendBestEffort(&p.node, bye)
		}
		if lerr := c.ml.Leave(timeout); lerr != nil {
			c.log.Warn("leaving the cluster", "err", lerr)
		}
		c.cancel()
		c.events.close()
		err = c.ml.Shutdown()
		c.wg.Wait()
	})
	return err
}

// Members returns every node this node knows of, itself first, then by name.
func (c *Cluster) Members() []Member {
	reply := make(chan []Member, 1)
	select {
	case c.askMem <- reply:
		return <-reply
	case <-c.ctx.Done():
		return []Member{{Name: c.opts.Name, Addr: c.Addr(), State: "left"}}
	}
}

// SetConfigHash announces the hash of this node's configuration to the
// others, as memberlist node metadata (at most 512 bytes); it blocks until
// the update is broadcast or ctx ends. Members report it on Members.
func (c *Cluster) SetConfigHash(ctx context.Context, hash string) error {
	if len(hash) > memberlist.MetaMaxSize {
		return fmt.Errorf("cluster: config hash of %d bytes is over memberlist's %d", len(hash), memberlist.MetaMaxSize)
	}
	c.meta.Store(&hash)
	timeout := c.opts.Timeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if err := c.ml.UpdateNode(timeout); err != nil {
		return fmt.Errorf("cluster: announcing the config hash: %w", err)
	}
	return nil
}

func (c *Cluster) configHash() string {
	if h := c.meta.Load(); h != nil {
		return *h
	}
	return ""
}

// Replicating reports whether a change handed to Replicate now would reach
// anyone: false while no peer is live, when a node may skip encoding its
// changes. A peer that becomes live later catches up on them by
// anti-entropy, as it does on whatever it missed while away.
func (c *Cluster) Replicating() bool { return len(*c.peers.Load()) > 0 }

// Replicate sends one encoded cache change to every live member. It never
// blocks: when the outgoing queue is full the change is dropped (counted),
// and the next catch-up round repairs it.
func (c *Cluster) Replicate(change []byte) {
	select {
	case c.repl <- change:
	default:
		c.m.dropped.WithLabelValues("cache").Inc()
	}
}

// syncRetry is the wait before a failed catch-up round is tried again.
const syncRetry = 2 * time.Second

type syncResult struct {
	peer string
	ok   bool
}

// memberState is the table kept by run.
type memberState struct {
	addr  string
	state string
	meta  string // the member's node metadata: its config hash
}

// run owns the member table and the live peers' senders. It reacts to
// membership events, flushes quota news and starts catch-up rounds.
func (c *Cluster) run() {
	members := map[string]*memberState{}
	senders := map[string]*peer{}
	syncing := map[string]bool{}
	leaving := map[string]bool{} // said goodbye: their leave event means "left"
	syncDone := make(chan syncResult, 16)
	flush := time.NewTicker(c.opts.FlushInterval)
	defer flush.Stop()
	resync := time.NewTicker(c.opts.SyncInterval)
	defer resync.Stop()
	defer func() {
		for _, p := range senders {
			p.stop()
		}
	}()

	publish := func() {
		live := make([]*peer, 0, len(senders))
		names := make([]string, 0, len(senders))
		for name, p := range senders {
			live = append(live, p)
			names = append(names, name)
		}
		slices.Sort(names)
		c.peers.Store(&live)
		if c.opts.Quota != nil {
			c.opts.Quota.SetPeers(names)
		}
		counts := map[string]int{"alive": 1}
		for _, m := range members {
			counts[m.state]++
		}
		for _, s := range []string{"alive", "suspect", "dead", "left"} {
			c.m.members.WithLabelValues(s).Set(float64(counts[s]))
		}
	}
	startSync := func(name string, delay time.Duration) {
		p := senders[name]
		if c.opts.Cache == nil || p == nil || syncing[name] {
			return
		}
		syncing[name] = true
		c.spawn(func() {
			ok := false
			defer func() {
				// run may have returned (Close): do not block Close's Wait.
				select {
				case syncDone <- syncResult{name, ok}:
				case <-c.ctx.Done():
				}
			}()
			select {
			case <-time.After(delay):
			case <-c.ctx.Done():
				return
			}
			ok = c.pull(p)
		})
	}
	publish()

	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.events.ready:
			for _, ev := range c.events.take() {
				if ev.node.Name == c.opts.Name {
					continue
				}
				if ev.kind == evBye {
					leaving[ev.node.Name] = true
					continue
				}
				addr := net.JoinHostPort(ev.node.Addr.String(), strconv.Itoa(int(ev.node.Port)))
				m := members[ev.node.Name]
				if m == nil {
					m = &memberState{}
					members[ev.node.Name] = m
				}
				m.addr = addr
				m.meta = string(ev.node.Meta)
				switch ev.kind {
				case evJoin, evUpdate:
					delete(leaving, ev.node.Name)
					was := m.state
					m.state = "alive"
					if p := senders[ev.node.Name]; p == nil || p.addr != addr {
						if p != nil {
							p.stop()
						}
						senders[ev.node.Name] = c.newPeer(ev.node)
					}
					if was != "alive" {
						c.log.Info("member joined", "member", ev.node.Name, "addr", addr)
						// Let the newcomer finish starting before pulling from it.
						startSync(ev.node.Name, 200*time.Millisecond)
					}
				case evLeave:
					m.state = "dead"
					if leaving[ev.node.Name] {
						m.state = "left"
						delete(leaving, ev.node.Name)
					}
					if p := senders[ev.node.Name]; p != nil {
						p.stop()
						delete(senders, ev.node.Name)
					}
					c.log.Info("member gone", "member", ev.node.Name, "addr", addr, "state", m.state)
				}
			}
			publish()
		case reply := <-c.askMem:
			out := []Member{{Name: c.opts.Name, Addr: c.Addr(), State: "alive", ConfigHash: c.configHash()}}
			suspects := map[string]bool{}
			for _, n := range c.ml.Members() {
				if n.State == memberlist.StateSuspect {
					suspects[n.Name] = true
				}
			}
			names := make([]string, 0, len(members))
			for name := range members {
				names = append(names, name)
			}
			slices.Sort(names)
			for _, name := range names {
				m := members[name]
				st := m.state
				if st == "alive" && suspects[name] {
					st = "suspect"
				}
				out = append(out, Member{Name: name, Addr: m.addr, State: st, ConfigHash: m.meta})
			}
			reply <- out
		case <-flush.C:
			c.flushQuota()
		case <-resync.C:
			names := make([]string, 0, len(senders))
			for name := range senders {
				names = append(names, name)
			}
			if len(names) > 0 {
				startSync(names[rand.IntN(len(names))], 0)
			}
		case r := <-syncDone:
			delete(syncing, r.peer)
			if !r.ok {
				// Typically a cache still loading on either side: try again
				// soon rather than at the next periodic round.
				startSync(r.peer, syncRetry)
			}
		}
	}
}

// aloneFlushTicks is how many flush ticks a node without live peers lets
// pass between two collections of its quota news (1 s at the default
// FlushInterval).
const aloneFlushTicks = 20

// flushQuota sends this node's quota news to every live peer.
func (c *Cluster) flushQuota() {
	if c.opts.Quota == nil {
		return
	}
	peers := *c.peers.Load()
	// Drained even with no peer: news is "since the last call", and a peer
	// that joins later gets the whole state by push/pull instead. But only
	// every aloneFlushTicks ticks: collecting it asks each of the quota's
	// actors in turn, two goroutine wake-ups each, which a node alone would
	// otherwise pay every tick for nothing (and news a joining peer gets
	// from before that is merged like any other).
	if len(peers) == 0 {
		if c.aloneTicks++; c.aloneTicks < aloneFlushTicks {
			return
		}
	}
	c.aloneTicks = 0
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
	defer cancel()
	packets, reliable, err := c.opts.Quota.Outgoing(ctx, false, maxPacket)
	if err != nil {
		c.log.Warn("collecting quota news", "err", err)
		return
	}
	if len(peers) == 0 {
		return
	}
	for _, pk := range packets {
		msg := frame(kindQuota, c.opts.Name, pk)
		for _, p := range peers {
			if err := c.ml.SendBestEffort(&p.node, msg); err != nil {
				c.m.dropped.WithLabelValues("quota").Inc()
				continue
			}
			c.m.sent.WithLabelValues("quota").Inc()
		}
	}
	for _, pl := range reliable {
		msg := frame(kindQuota, c.opts.Name, pl)
		for _, p := range peers {
			p.send(c, kindQuota, msg)
		}
	}
}

// maxPacket is the largest quota packet body: a UDP datagram memberlist sends
// whole, with room for its header, our frame and AES-GCM.
const maxPacket = 1200

// replicate batches cache changes and hands each batch to every live peer.
func (c *Cluster) replicate() {
	const maxBatch = 512 << 10
	var batch []byte
	var timer <-chan time.Time
	send := func() {
		if len(batch) == 0 {
			return
		}
		msg := frame(kindCache, c.opts.Name, batch)
		for _, p := range *c.peers.Load() {
			p.send(c, kindCache, msg)
		}
		batch, timer = nil, nil
	}
	for {
		select {
		case <-c.ctx.Done():
			return
		case ch := <-c.repl:
			batch = append(batch, ch...)
			if len(batch) >= maxBatch {
				send()
			} else if timer == nil {
				timer = time.After(c.opts.ReplicateDelay)
			}
		case <-timer:
			send()
		}
	}
}

// drain applies the payloads that arrive on in, one at a time, each within
// Options.Timeout, until Close: quota news (quotaIn) and replicated cache
// changes (applyIn) each have one.
func (c *Cluster) drain(in <-chan []byte, apply func(context.Context, []byte) error, what string, level slog.Level) {
	for {
		select {
		case <-c.ctx.Done():
			return
		case pl := <-in:
			ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
			if err := apply(ctx, pl); err != nil {
				c.log.Log(ctx, level, what, "err", err)
			}
			cancel()
		}
	}
}

// receive routes one message from a peer. It runs on memberlist's goroutines
// and never blocks: a full queue drops the message (counted).
func (c *Cluster) receive(msg []byte) {
	k, from, body, err := unframe(msg)
	if err != nil {
		c.m.dropped.WithLabelValues("malformed").Inc()
		return
	}
	c.m.received.WithLabelValues(k.String()).Inc()
	body = slices.Clone(body) // memberlist reuses its buffer
	var q chan []byte
	switch k {
	case kindQuota:
		if c.opts.Quota == nil {
			return
		}
		q = c.quotaIn
	case kindCache:
		if c.opts.Cache == nil {
			return
		}
		q = c.applyIn
	case kindDigest, kindWant:
		if c.opts.Cache == nil {
			return
		}
		select {
		case c.serveIn <- inbound{k, from, body}:
		default:
			c.m.dropped.WithLabelValues(k.String()).Inc()
		}
		return
	case kindVersions, kindEntries:
		c.sessions.deliver(inbound{k, from, body}, c.m)
		return
	case kindBye:
		c.events.push(event{kind: evBye, node: memberlist.Node{Name: from}})
		return
	default:
		c.m.dropped.WithLabelValues("malformed").Inc()
		return
	}
	select {
	case q <- body:
	default:
		c.m.dropped.WithLabelValues(k.String()).Inc()
	}
}

// peerNamed returns the live peer with that name, or nil.
func (c *Cluster) peerNamed(name string) *peer {
	for _, p := range *c.peers.Load() {
		if p.node.Name == name {
			return p
		}
	}
	return nil
}

// join contacts the seeds until one answers, backing off between attempts,
// and tries again whenever this node finds itself alone (the others all
// restarted, or a partition healed).
func (c *Cluster) join() {
	self := c.Addr()
	var seeds []string
	for _, s := range c.opts.Join {
		if s != self && s != c.opts.Bind {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		return
	}
	backoff := 250 * time.Millisecond
	for {
		if c.ml.NumMembers() <= 1 {
			n, err := c.ml.Join(seeds)
			if n > 0 {
				c.log.Info("joined the cluster", "seeds_answered", n, "members", c.ml.NumMembers())
				backoff = 250 * time.Millisecond
			} else {
				c.log.Info("no seed answered; serving alone and retrying", "seeds", seeds, "retry_in", backoff, "err", err)
				c.m.joinFailures.Inc()
				select {
				case <-c.ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, c.opts.JoinBackoffMax)
				continue
			}
		}
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// logWriter turns memberlist's "[LEVEL] memberlist: ..." lines into slog
// records.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	levels := [...]struct {
		prefix string
		level  slog.Level
	}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}}
	for _, l := range levels {
		if rest, ok := strings.CutPrefix(line, l.prefix); ok {
			level, line = l.level, strings.TrimSpace(rest)
			break
		}
	}
	// memberlist's errors about a peer are expected when a peer dies: keep
	// them at warning level, not error.
	level = min(level, slog.LevelWarn)
	w.log.Log(context.Background(), level, line)
	return len(p), nil
}

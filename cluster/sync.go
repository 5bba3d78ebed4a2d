package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

const (
	// wantBatch is how many entries one catch-up request asks for; with a
	// 384-dimension vector an entry is about 2.5 KB on the wire.
	wantBatch = 256
	// wantWindow is how many requests may be outstanding at once.
	wantWindow = 4
	// versionsChunk bounds one versions message.
	versionsChunk = 1 << 20
)

var errSyncTimeout = errors.New("peer did not answer in time")

// sessionTable routes catch-up answers to the round waiting for them.
type sessionTable struct {
	mu sync.Mutex
	m  map[uint64]chan inbound
}

func (t *sessionTable) open(id uint64) chan inbound {
	ch := make(chan inbound, 2*wantWindow+16)
	t.mu.Lock()
	t.m[id] = ch
	t.mu.Unlock()
	return ch
}

func (t *sessionTable) close(id uint64) {
	t.mu.Lock()
	delete(t.m, id)
	t.mu.Unlock()
}

func (t *sessionTable) deliver(in inbound, m *metrics) {
	if len(in.body) < 8 {
		m.dropped.WithLabelValues("malformed").Inc()
		return
	}
	id := binary.LittleEndian.Uint64(in.body) // the session leads every answer (see wire.go)
	t.mu.Lock()
	ch := t.m[id]
	t.mu.Unlock()
	if ch == nil {
		m.dropped.WithLabelValues(in.k.String()).Inc()
		return
	}
	select {
	case ch <- in:
	default:
		m.dropped.WithLabelValues(in.k.String()).Inc()
	}
}

// pull reconciles this node's cache with p's: it learns the buckets whose
// digests differ, their versions on p, applies p's tombstones it lacks and
// fetches the entries it lacks. What p lacks, p pulls in its own round. It
// reports whether the round completed.
func (c *Cluster) pull(p *peer) bool {
	start := time.Now()
	n, err := c.pullFrom(p)
	c.m.syncSeconds.Observe(time.Since(start).Seconds())
	switch {
	case err != nil && c.ctx.Err() != nil:
		return true
	case err != nil:
		c.m.syncs.WithLabelValues("failed").Inc()
		c.log.Info("cache catch-up round did not complete; retrying", "member", p.node.Name, "fetched", n, "retry_in", syncRetry, "err", err)
	case n > 0:
		c.m.syncs.WithLabelValues("fetched").Inc()
		c.log.Info("cache caught up", "member", p.node.Name, "fetched", n, "took", time.Since(start).Round(time.Millisecond))
	default:
		c.m.syncs.WithLabelValues("in_sync").Inc()
	}
	return err == nil
}

func (c *Cluster) pullFrom(p *peer) (fetched int, err error) {
	session := rand.Uint64()
	answers := c.sessions.open(session)
	defer c.sessions.close(session)
	ctx := c.ctx
	wait := func(want kind) (inbound, error) {
		t := time.NewTimer(2 * c.opts.Timeout)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return inbound{}, ctx.Err()
			case <-t.C:
				return inbound{}, errSyncTimeout
			case in := <-answers:
				if in.k == want {
					return in, nil
				}
			}
		}
	}

	d, err := c.digest()
	if err != nil {
		return 0, err
	}
	p.send(c, kindDigest, frame(kindDigest, c.opts.Name, appendDigest(nil, session, &d)))
	var remote []Version
	var buckets []uint8
	got := map[uint64]bool{}
	chunks := uint64(0) // known once the last chunk arrived
	for chunks == 0 || uint64(len(got)) < chunks {
		in, err := wait(kindVersions)
		if err != nil {
			return 0, fmt.Errorf("waiting for versions (%d chunks so far): %w", len(got), err)
		}
		m, err := parseVersions(in.body)
		if err != nil {
			return 0, err
		}
		if got[m.seq] {
			continue
		}
		got[m.seq] = true
		remote = append(remote, m.versions...)
		if m.last {
			buckets, chunks = m.buckets, m.seq+1
		}
	}
	if len(buckets) == 0 {
		return 0, nil
	}
	lctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	local, err := c.opts.Cache.Versions(lctx, buckets)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("local versions: %w", err)
	}
	have := make(map[string]bool, len(local)) // ID → deleted
	for _, v := range local {
		have[v.ID] = v.Deleted
	}
	var deletes []Version
	var wants []string
	for _, v := range remote {
		deleted, ok := have[v.ID]
		switch {
		case v.Deleted && (!ok || !deleted):
			deletes = append(deletes, v)
		case !v.Deleted && !ok:
			wants = append(wants, v.ID)
		}
	}
	if len(deletes) > 0 {
		dctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
		err := c.opts.Cache.Delete(dctx, deletes)
		cancel()
		if err != nil {
			return 0, fmt.Errorf("applying tombstones: %w", err)
		}
	}

	next := 0
	var seq uint64
	asked := map[uint64]int{} // outstanding requests: sequence → IDs asked
	for next < len(wants) || len(asked) > 0 {
		for len(asked) < wantWindow && next < len(wants) {
			end := min(next+wantBatch, len(wants))
			seq++
			p.send(c, kindWant, frame(kindWant, c.opts.Name, appendWant(nil, session, seq, wants[next:end])))
			asked[seq] = end - next
			next = end
		}
		in, err := wait(kindEntries)
		if err != nil {
			return fetched, fmt.Errorf("waiting for entries: %w", err)
		}
		_, got, payload, err := parseEntries(in.body)
		if err != nil {
			return fetched, err
		}
		n, ok := asked[got]
		if !ok {
			continue // a duplicate
		}
		delete(asked, got)
		actx, cancel := context.WithTimeout(ctx, 2*c.opts.Timeout)
		err = c.opts.Cache.Apply(actx, payload)
		cancel()
		if err != nil {
			return fetched, fmt.Errorf("applying fetched entries: %w", err)
		}
		fetched += n
		c.m.syncEntries.Add(float64(n))
	}
	return fetched, nil
}

func (c *Cluster) digest() (Digest, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
	defer cancel()
	d, err := c.opts.Cache.Digest(ctx)
	if err != nil {
		return Digest{}, fmt.Errorf("local digest: %w", err)
	}
	return d, nil
}

// serve answers peers' catch-up requests, one at a time.
func (c *Cluster) serve() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case in := <-c.serveIn:
			if err := c.answer(in); err != nil && c.ctx.Err() == nil {
				c.log.Warn("answering a catch-up request", "member", in.from, "kind", in.k.String(), "err", err)
			}
		}
	}
}

func (c *Cluster) answer(in inbound) error {
	reply := func(k kind, body []byte) {
		msg := frame(k, c.opts.Name, body)
		if p := c.peerNamed(in.from); p != nil {
			p.send(c, k, msg)
			return
		}
		// Not yet in our table (its join event is still queued): send directly.
		for _, n := range c.ml.Members() {
			if n.Name == in.from {
				if err := c.ml.SendReliable(n, msg); err != nil {
					c.m.dropped.WithLabelValues(k.String()).Inc()
				}
				return
			}
		}
		c.m.dropped.WithLabelValues(k.String()).Inc()
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
	defer cancel()
	switch in.k {
	case kindDigest:
		session, theirs, err := parseDigest(in.body)
		if err != nil {
			return err
		}
		ours, err := c.opts.Cache.Digest(ctx)
		if err != nil {
			return fmt.Errorf("local digest: %w", err)
		}
		var buckets []uint8
		for i := range ours {
			if ours[i] != theirs[i] {
				buckets = append(buckets, uint8(i))
			}
		}
		var vs []Version
		if len(buckets) > 0 {
			if vs, err = c.opts.Cache.Versions(ctx, buckets); err != nil {
				return fmt.Errorf("local versions: %w", err)
			}
		}
		// Chunks of about versionsChunk bytes; the last one names the buckets.
		per := c.opts.versionsPerChunk
		var seq uint64
		for ; len(vs) > per; seq++ {
			reply(kindVersions, appendVersions(nil, session, seq, false, nil, vs[:per]))
			vs = vs[per:]
		}
		reply(kindVersions, appendVersions(nil, session, seq, true, buckets, vs))
		return nil
	case kindWant:
		session, seq, ids, err := parseWant(in.body)
		if err != nil {
			return err
		}
		payload, err := c.opts.Cache.Export(ctx, ids)
		if err != nil {
			return fmt.Errorf("exporting %d entries: %w", len(ids), err)
		}
		reply(kindEntries, appendEntries(nil, session, seq, payload))
		return nil
	}
	return nil
}

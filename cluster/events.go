package cluster

import (
	"context"
	"sync"

	"github.com/hashicorp/memberlist"
)

type eventKind uint8

const (
	evJoin eventKind = iota
	evLeave
	evUpdate
	evBye // a peer said it is leaving on purpose
)

type event struct {
	kind eventKind
	node memberlist.Node // a copy: memberlist owns its structs
}

// eventQueue is an unbounded queue from memberlist's callbacks, which must not
// block and whose events must not be lost, to run.
type eventQueue struct {
	mu     sync.Mutex
	items  []event
	closed bool
	ready  chan struct{} // has a token while items is non-empty
}

func (q *eventQueue) init() { q.ready = make(chan struct{}, 1) }

func (q *eventQueue) push(e event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.items = append(q.items, e)
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *eventQueue) take() []event {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}

func (q *eventQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
}

// events is memberlist's EventDelegate.
type events struct{ c *Cluster }

func (e events) NotifyJoin(n *memberlist.Node)   { e.c.events.push(event{evJoin, *n}) }
func (e events) NotifyLeave(n *memberlist.Node)  { e.c.events.push(event{evLeave, *n}) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.c.events.push(event{evUpdate, *n}) }

// delegate is memberlist's Delegate: user messages and push/pull state.
type delegate struct{ c *Cluster }

func (d delegate) NodeMeta(limit int) []byte {
	h := d.c.configHash()
	if len(h) > limit {
		return nil
	}
	return []byte(h)
}
func (d delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d delegate) NotifyMsg(msg []byte)                       { d.c.receive(msg) }

// LocalState is this node's whole quota state, for push/pull anti-entropy.
func (d delegate) LocalState(join bool) []byte {
	c := d.c
	if c.opts.Quota == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
	defer cancel()
	packets, reliable, err := c.opts.Quota.Outgoing(ctx, true, maxPacket)
	if err != nil {
		c.log.Warn("collecting quota state for push/pull", "err", err)
		return nil
	}
	return appendState(appendState(nil, packets), reliable)
}

// MergeRemoteState merges a peer's whole quota state.
func (d delegate) MergeRemoteState(buf []byte, join bool) {
	c := d.c
	if c.opts.Quota == nil || len(buf) == 0 {
		return
	}
	payloads, err := parseState(buf)
	if err != nil {
		c.m.dropped.WithLabelValues("malformed").Inc()
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
	defer cancel()
	for _, p := range payloads {
		if err := c.opts.Quota.Merge(ctx, p); err != nil {
			c.log.Debug("merging pushed quota state", "err", err)
		}
	}
}

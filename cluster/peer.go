package cluster

import (
	"sync"

	"github.com/hashicorp/memberlist"
)

// peer sends reliable messages to one live member from its own goroutine,
// so a slow or hung member delays only its own queue.
type peer struct {
	node     memberlist.Node
	addr     string
	queue    chan outgoing
	quit     chan struct{}
	stopOnce sync.Once
}

type outgoing struct {
	k   kind
	msg []byte
}

// peerQueue is how many messages may wait for one member; beyond it they are
// dropped and catch-up repairs what they carried.
const peerQueue = 256

func (c *Cluster) newPeer(n memberlist.Node) *peer {
	p := &peer{
		node:  n,
		addr:  n.Address(),
		queue: make(chan outgoing, peerQueue),
		quit:  make(chan struct{}),
	}
	c.spawn(func() { p.loop(c) })
	return p
}

// send enqueues msg without blocking.
func (p *peer) send(c *Cluster, k kind, msg []byte) {
	select {
	case p.queue <- outgoing{k, msg}:
	default:
		c.m.dropped.WithLabelValues(k.String()).Inc()
	}
}

func (p *peer) stop() { p.stopOnce.Do(func() { close(p.quit) }) }

func (p *peer) loop(c *Cluster) {
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-p.quit:
			return
		case o := <-p.queue:
			// SendReliable dials with memberlist's TCPTimeout (Options.Timeout).
			if err := c.ml.SendReliable(&p.node, o.msg); err != nil {
				c.m.dropped.WithLabelValues(o.k.String()).Inc()
				c.log.Debug("sending to member", "member", p.node.Name, "kind", o.k.String(), "err", err)
				continue
			}
			c.m.sent.WithLabelValues(o.k.String()).Inc()
		}
	}
}

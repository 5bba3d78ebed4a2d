package node

import "time"

// BackendStatus is one backend's health as this node sees it (GET
// /admin/backends).
type BackendStatus struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// State is up (circuit closed), open (refusing traffic until OpenUntil)
	// or half_open (the opening expired and the next result decides).
	State     string     `json:"state"`
	OpenUntil *time.Time `json:"open_until"`
	// TPMRemaining is the backend's own rate-limit header when read in the
	// last few seconds, else its configured tpm less what this node sent it
	// in the last minute; nil when neither is known.
	TPMRemaining *int64 `json:"tpm_remaining"`
}

// Backends reports every configured backend's circuit and headroom, in
// configuration order.
func (g *Gateway) Backends() []BackendStatus {
	now := g.now()
	out := make([]BackendStatus, 0, len(g.backs))
	for _, b := range g.backs {
		s := BackendStatus{Name: b.name, Kind: b.kind, State: "up"}
		if open, until := b.breaker.open(now); open {
			u := until.UTC()
			s.State, s.OpenUntil = "open", &u
		} else if b.breaker.trips.Load() > 0 {
			s.State = "half_open"
		}
		if r, ok := b.capacity.remainingAt(now); ok {
			s.TPMRemaining = &r
		}
		out = append(out, s)
	}
	return out
}

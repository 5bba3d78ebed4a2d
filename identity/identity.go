package identity

import (
	"context"
)

// Identity authenticates the credentials the configuration's own keys do
// not: run-time keys (and, when configured, bearer tokens).
type Identity struct {
	keys *Keys
}

// New combines the authenticators; a nil one is skipped.
func New(keys *Keys) *Identity {
	return &Identity{keys: keys}
}

// Authenticate returns the caller credential belongs to. Errors: ErrNotMine
// when no authenticator knows it, a *Refusal (safe to show the client) when
// one knows it and refuses it.
func (id *Identity) Authenticate(ctx context.Context, credential string) (Principal, error) {
	if id.keys != nil {
		p, err := id.keys.Authenticate(credential)
		if err != ErrNotMine {
			return p, err
		}
	}
	return Principal{}, ErrNotMine
}

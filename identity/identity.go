package identity

import (
	"context"
	"strings"
)

// Identity authenticates the credentials the configuration's own keys do
// not: run-time keys (and, when configured, bearer tokens).
type Identity struct {
	keys *Keys
	jwt  *JWT
}

// New combines the authenticators; a nil one is skipped.
func New(keys *Keys, jwt *JWT) *Identity {
	return &Identity{keys: keys, jwt: jwt}
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
	if id.jwt != nil {
		return id.jwt.Authenticate(ctx, credential)
	}
	return Principal{}, ErrNotMine
}

// KindOf names the kind a credential claims to be by its shape alone (for
// counting refusals): KindJWT, KindRuntimeKey or KindKey; "none" if empty.
func KindOf(credential string) string {
	switch {
	case credential == "":
		return "none"
	case looksLikeJWT(credential):
		return KindJWT
	case len(credential) == keyLen && strings.HasPrefix(credential, KeyPrefix):
		return KindRuntimeKey
	}
	return KindKey
}

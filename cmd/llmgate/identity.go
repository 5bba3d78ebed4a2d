package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmgate/llmgate/identity"
	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/node"
)

// newJWT builds the token authenticator of auth.jwt (nil without issuers),
// whose key fetches start now, in the background; prev is the one it
// replaces after a reload, whose unchanged issuers' keys it shares.
func newJWT(cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer, prev *identity.JWT) (*identity.JWT, error) {
	if len(cfg.Auth.JWT) == 0 {
		return nil, nil
	}
	return identity.NewJWT(identity.JWTOptions{Issuers: cfg.Auth.JWT, ClientIDs: clientIDs(cfg), Logger: logger, Registerer: reg, Previous: prev})
}

// newBackendTokens builds the Microsoft Entra ID token source of every
// backend with auth: entra. A credential that cannot be built (a missing
// certificate file, say) is a startup error naming the backend; tokens are
// fetched on first use. stop ends their background refreshes.
func newBackendTokens(cfg *config.Config, logger *slog.Logger) (map[string]node.TokenSource, func(), error) {
	out := map[string]node.TokenSource{}
	var made []*identity.EntraToken
	stop := func() {
		for _, t := range made {
			t.Close()
		}
	}
	for _, b := range cfg.Backends {
		if b.Auth != config.BackendAuthEntra {
			continue
		}
		t, err := identity.NewEntraToken(identity.EntraOptions{Backend: b.Name, Config: b.Entra, Logger: logger})
		if err != nil {
			stop()
			return nil, nil, err
		}
		logger.Info("backend authenticates with Microsoft Entra ID", "backend", b.Name, "credential", t.Kind())
		made = append(made, t)
		out[b.Name] = t
	}
	return out, stop, nil
}

// entraBackends maps each backend with auth: entra to its settings: a reload
// that changes them needs a restart, as the token sources are built at start.
func entraBackends(cfg *config.Config) map[string]config.Entra {
	out := map[string]config.Entra{}
	for _, b := range cfg.Backends {
		if b.Auth == config.BackendAuthEntra {
			out[b.Name] = b.Entra
		}
	}
	return out
}

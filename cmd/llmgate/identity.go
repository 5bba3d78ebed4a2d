package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmgate/llmgate/identity"
	"github.com/llmgate/llmgate/internal/config"
)

// newIdentity builds what authenticates consumers beyond the configuration's
// keys: the run-time keys, and the token issuers of auth.jwt (whose key
// fetches start now, in the background). stop ends those fetches.
func newIdentity(cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer, keys *identity.Keys) (*identity.Identity, func(), error) {
	if len(cfg.Auth.JWT) == 0 {
		return identity.New(keys, nil), func() {}, nil
	}
	clientIDs := map[string]string{}
	for _, c := range cfg.Consumers {
		for _, id := range c.ClientIDs {
			clientIDs[id] = c.Name
		}
	}
	j, err := identity.NewJWT(identity.JWTOptions{Issuers: cfg.Auth.JWT, ClientIDs: clientIDs, Logger: logger, Registerer: reg})
	if err != nil {
		return nil, nil, err
	}
	return identity.New(keys, j), j.Close, nil
}

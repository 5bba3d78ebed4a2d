package api

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmgate/llmgate/identity"
	"github.com/llmgate/llmgate/internal/promreg"
	"github.com/llmgate/llmgate/node"
)

func newAuthMetrics(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_authentications_total",
		Help: "Data-plane authentications by credential kind (api_key, runtime_key, jwt, none), token issuer and result (ok, refused). Never the credential.",
	}, []string{"credential", "issuer", "result"})
	c, err := promreg.Register(reg, c) // an API rebuilt by a reload counts on
	if err != nil {
		return nil, fmt.Errorf("registering authentication metrics: %w", err)
	}
	return c, nil
}

// countAuth counts one authentication: c is the consumer it found, nil for
// a refusal (then the kind is guessed from the credential's shape).
func (a *API) countAuth(cred string, c *node.Consumer) {
	if c == nil {
		a.auths.WithLabelValues(identity.KindOf(cred), "", "refused").Inc()
		return
	}
	a.auths.WithLabelValues(c.Credential, c.Issuer, "ok").Inc()
}

// Package promreg registers Prometheus collectors so that a rebuilt
// component keeps counting in the series of the one it replaces.
//
// It owns nothing but that rule; it knows no metric of its own.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c, or returns the collector already registered with
// the same descriptors: a gateway or front rebuilt by a configuration reload
// then adds to the existing series instead of failing to register.
func Register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if old, ok := are.ExistingCollector.(T); ok {
			return old, nil
		}
	}
	return c, err
}

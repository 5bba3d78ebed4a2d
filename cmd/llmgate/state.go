package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/llmgate/llmgate/affinity"
	"github.com/llmgate/llmgate/api"
	"github.com/llmgate/llmgate/cluster"
	"github.com/llmgate/llmgate/identity"
	"github.com/llmgate/llmgate/index"
	"github.com/llmgate/llmgate/index/graph"
	"github.com/llmgate/llmgate/index/guard"
	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/store"
	"github.com/llmgate/llmgate/internal/tokens"
	"github.com/llmgate/llmgate/node"
	"github.com/llmgate/llmgate/quota"
	history "github.com/llmgate/llmgate/usage"
)

// state is what a node persists: its database, token accounting and cache.
type state struct {
	db      *store.DB
	limiter *quota.Limiter
	cache   *index.Cache // nil when the cache is disabled
	keys    *identity.Keys
	// stopIdentity ends identity's background work (token key fetches).
	stopIdentity func()
	history      *history.History
	owners       *affinity.Store
}

// openState opens the database in the data directory and starts the limiter
// and the cache on it. A database that cannot be opened (corrupt, locked) is
// an error: a node must not start with its counters silently reset.
// onChange receives the cache's local changes, for replication.
func openState(cfg *config.Config, logger *slog.Logger, onChange func(index.Change)) (_ *state, err error) {
	st := &state{}
	defer func() {
		if err != nil {
			_ = st.close()
		}
	}()
	st.db, err = store.Open(filepath.Join(cfg.Node.DataDir, "db"), store.Options{Logger: logger})
	if err != nil {
		if de := (*store.DamageError)(nil); errors.As(err, &de) {
			return nil, fmt.Errorf("data directory %s: %w; refusing to start on it (llmgate repair --data-dir %s salvages what is readable)", cfg.Node.DataDir, err, cfg.Node.DataDir)
		}
		return nil, fmt.Errorf("data directory %s: %w", cfg.Node.DataDir, err)
	}
	st.limiter, err = quota.Open(quota.Options{DB: st.db.DB, Logger: logger, NodeName: cfg.Node.Name}, consumerLimits(cfg))
	if err != nil {
		return nil, fmt.Errorf("starting token accounting: %w", err)
	}
	names := make([]string, 0, len(cfg.Consumers))
	for _, c := range cfg.Consumers {
		names = append(names, c.Name)
	}
	st.keys, err = identity.OpenKeys(identity.KeyOptions{DB: st.db.DB, Logger: logger, Consumers: names})
	if err != nil {
		return nil, err
	}
	if uh := cfg.Telemetry.UsageHistory; uh == nil || *uh {
		st.history, err = history.Open(history.Options{DB: st.db.DB, Logger: logger, Node: cfg.Node.Name, Retention: cfg.Telemetry.UsageRetention, Prices: routePrices(cfg)})
		if err != nil {
			return nil, fmt.Errorf("starting the usage history: %w", err)
		}
	}
	st.owners = affinity.Open(affinity.Options{DB: st.db.DB, TTL: cfg.Responses.AffinityTTL, Logger: logger})
	// The tokenizer's tables, built before the first requests need them:
	// left to the first count, every request of the first ~100 ms after a
	// start waited on that build.
	models := make([]string, 0, len(cfg.Routes))
	for name := range cfg.Routes {
		models = append(models, name)
	}
	go tokens.Warm(models...)
	if cfg.Cache.Enabled {
		guard.Warm() // the guard's WordNet table, read before any request needs it
		params := graph.Params{EfSearch: cfg.Cache.EfSearch, EfConstruction: cfg.Cache.EfConstruction, Float32Walk: cfg.Cache.IndexInt8 != nil && !*cfg.Cache.IndexInt8}
		newGraph := func() graph.Index { return graph.NewHNSW(params) }
		if cfg.Cache.Index == config.IndexCoderHNSW {
			newGraph = func() graph.Index { return graph.NewCoder(params) }
		}
		st.cache, err = index.Open(context.Background(), index.Options{
			DB: st.db.DB, Logger: logger, NewGraph: newGraph,
			TTL: cfg.Cache.TTL, MaxEntries: cfg.Cache.MaxEntries, Check: guard.Check, Judgeable: guard.Judgeable,
			OnChange: onChange,
		})
		if err != nil {
			return nil, fmt.Errorf("starting the cache: %w", err)
		}
	}
	return st, nil
}

// nodeCache and adminCache return the cache as the node and the admin API
// see it, or a nil interface when there is none.
func (st *state) nodeCache() node.Cache {
	if st.cache == nil {
		return nil
	}
	return st.cache
}

// clusterQuota and clusterCache return what the cluster exchanges, or nil
// interfaces when there is nothing to share.
func (st *state) clusterQuota() cluster.QuotaState {
	if st.limiter == nil {
		return nil
	}
	return node.SharedState{Quota: node.QuotaExchange{Limiter: st.limiter, History: st.history}, Keys: st.keys, Owners: st.owners}
}

// usageAdmin is the usage history as /admin/usage sees it, or a nil
// interface when telemetry.usage_history is off.
func (st *state) usageAdmin() api.UsageAdmin {
	if st.history == nil {
		return nil
	}
	return st.history
}

func (st *state) clusterCache() cluster.CacheState {
	if st.cache == nil {
		return nil
	}
	return node.CacheExchange{Cache: st.cache}
}

func (st *state) adminCache() api.CacheAdmin {
	if st.cache == nil {
		return nil
	}
	return st.cache
}

// close stops the cache and the limiter (writing their final state) and
// closes the database. Safe on a partly opened state.
func (st *state) close() error {
	var errs []error
	if st.stopIdentity != nil {
		st.stopIdentity()
		st.stopIdentity = nil
	}
	if st.cache != nil {
		errs = append(errs, st.cache.Close())
		st.cache = nil
	}
	if st.owners != nil {
		errs = append(errs, st.owners.Close())
		st.owners = nil
	}
	if st.keys != nil {
		errs = append(errs, st.keys.Close())
		st.keys = nil
	}
	if st.limiter != nil {
		errs = append(errs, st.limiter.Close())
		st.limiter = nil
	}
	if st.history != nil {
		errs = append(errs, st.history.Close())
		st.history = nil
	}
	if st.db != nil {
		errs = append(errs, st.db.Close())
		st.db = nil
	}
	return errors.Join(errs...)
}

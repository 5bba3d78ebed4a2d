package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
)

// restartOnly are the settings a running node cannot change: what it binds,
// where it stores, who it is in the cluster, and what its listeners and
// index were built with. A path names a key and everything under
// it. Everything else is applied by a reload.
var restartOnly = []string{
	"node.name",
	"node.data_dir",
	"listen",
	"admin_listen",
	"cluster",
	// Opening or closing the cache means opening or dropping its index
	// and its place in the cluster's exchange; the graph's kind and beams
	// are fixed when the graphs are built (entries would have to be
	// re-indexed).
	"cache.enabled",
	"cache.index",
	"cache.ef_search",
	"cache.ef_construction",
	"cache.index_int8",
	"server.read_header_timeout",
	"server.body_read_timeout",
	"server.idle_timeout",
	// The usage history's actor and its share of the cluster's exchange
	// start with the node.
	"telemetry.usage_history",
}

// RestartOnly returns the settings that differ between the running
// configuration and next but cannot change without a restart; a reload that
// would change any of them is refused whole.
func RestartOnly(running, next *Config) []string {
	var out []string
	if (running.TLS.CertFile == "") != (next.TLS.CertFile == "") {
		// A listener serves TLS or plain HTTP from its start; other TLS
		// files and settings apply live.
		out = append(out, "tls.cert_file")
	}
	for _, p := range Diff(running, next) {
		for _, r := range restartOnly {
			if p == r || strings.HasPrefix(p, r+".") || strings.HasPrefix(p, r+"[") {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// Diff returns the YAML paths of the settings that differ between a and b,
// in the order of the Config type: "consumers", "cache.score_threshold".
// Lists and maps are compared whole and named once.
func Diff(a, b *Config) []string {
	var out []string
	diff(reflect.ValueOf(*a), reflect.ValueOf(*b), "", &out)
	return out
}

func diff(a, b reflect.Value, path string, out *[]string) {
	if a.Kind() == reflect.Struct && a.Type().PkgPath() != "time" {
		t := a.Type()
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if name == "" || name == "-" || !t.Field(i).IsExported() {
				continue
			}
			diff(a.Field(i), b.Field(i), join(path, name), out)
		}
		return
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) && !slices.Contains(*out, path) {
		*out = append(*out, path)
	}
}

// Hash identifies the configuration that nodes share: everything but what
// differs from node to node by design (its name, data directory, listen and
// gossip addresses and seeds). Two nodes with the same Hash run the same
// consumers, keys, limits, routes, backends and cache settings; secrets are
// part of it, so a key rotated on one node only shows as drift. It is the
// first 16 hex digits of a SHA-256.
func (c *Config) Hash() string {
	shared := *c
	shared.Node = Node{}
	shared.Listen, shared.AdminListen = "", ""
	shared.Cluster.Gossip, shared.Cluster.Join = "", nil
	data, err := json.Marshal(shared)
	if err != nil {
		// Only channels or functions can fail, and Config has none.
		panic("config: hashing: " + err.Error())
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

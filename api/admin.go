package api

import (
	"crypto/subtle"
	"net"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/llmgate/llmgate/cluster"
	"github.com/llmgate/llmgate/internal/openai"
)

// AdminHandler serves the admin routes and /metrics.
func (a *API) AdminHandler() http.Handler {
	e := newEcho()
	e.Use(a.adminAuth)
	gatherer := a.opts.Gatherer
	if gatherer == nil {
		gatherer = prometheus.DefaultGatherer
	}
	metrics := promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{})
	e.GET("/metrics", echo.WrapHandler(metrics))
	e.GET("/admin/cluster", a.cluster)
	a.adminStateRoutes(e)
	a.adminKeyRoutes(e)
	a.usageRoute(e)
	return e
}

// adminAuth requires the bearer token; with no token configured it admits
// loopback clients only, so an unconfigured admin port is never open to a network.
func (a *API) adminAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if a.opts.AdminToken == "" {
			if !loopback(c.Request().RemoteAddr) {
				(&openai.Error{Status: http.StatusForbidden, Type: "invalid_request_error", Code: "forbidden",
					Message: "The admin API has no admin_token configured and accepts loopback clients only."}).Write(c.Response())
				return nil
			}
			return next(c)
		}
		token, ok := cutPrefixFold(c.Request().Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(token), []byte(a.opts.AdminToken)) != 1 {
			(&openai.Error{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: openai.CodeInvalidAPIKey,
				Message: "Missing or wrong admin bearer token."}).Write(c.Response())
			return nil
		}
		return next(c)
	}
}

func loopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// cluster reports the membership as this node sees it; without a cluster
// (tests building the front alone) a node's cluster is itself.
func (a *API) cluster(c echo.Context) error {
	members := []cluster.Member{{Name: a.opts.NodeName, Addr: a.opts.GossipAddr, State: "alive"}}
	if a.opts.Cluster != nil {
		members = a.opts.Cluster.Members()
	}
	return c.JSON(http.StatusOK, struct {
		Node    string           `json:"node"`
		Members []cluster.Member `json:"members"`
	}{Node: a.opts.NodeName, Members: members})
}

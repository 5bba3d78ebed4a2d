package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"strings"

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
	e.POST("/admin/config/reload", a.configReload)
	a.adminStateRoutes(e)
	a.adminKeyRoutes(e)
	a.usageRoute(e)
	a.backendsRoute(e)
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

// ReloadFunc re-reads and applies the node's configuration (Options.Reload).
// It returns the changed settings, or an error: a *ReloadRefused when the
// file is invalid or asks for a change that needs a restart, another error
// when applying failed. Either way an error means nothing changed.
type ReloadFunc func(ctx context.Context) (changed []string, err error)

// ReloadRefused is a reload refused for the reasons given.
type ReloadRefused struct{ Reasons []string }

func (r *ReloadRefused) Error() string {
	return "configuration reload refused: " + strings.Join(r.Reasons, "; ")
}

// configReload serves POST /admin/config/reload: 200 {"reloaded":true,
// "changed":[…]}, or 400 with the reasons in the OpenAI error format plus
// "reloaded":false and "errors":[…].
func (a *API) configReload(c echo.Context) error {
	if a.opts.Reload == nil {
		return adminError(c, http.StatusNotFound, openai.CodeNotFound, "This node cannot reload its configuration.")
	}
	changed, err := a.opts.Reload(c.Request().Context())
	var refused *ReloadRefused
	switch {
	case errors.As(err, &refused):
		type errorBody struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Code    string `json:"code"`
		}
		return c.JSON(http.StatusBadRequest, struct {
			Error    errorBody `json:"error"`
			Reloaded bool      `json:"reloaded"`
			Errors   []string  `json:"errors"`
		}{Error: errorBody{Message: refused.Error(), Type: "invalid_request_error", Code: "invalid_config"}, Errors: refused.Reasons})
	case err != nil:
		return adminError(c, http.StatusInternalServerError, openai.CodeInternal, "Reloading the configuration failed; the running configuration is unchanged: "+err.Error())
	}
	if changed == nil {
		changed = []string{}
	}
	return c.JSON(http.StatusOK, struct {
		Reloaded bool     `json:"reloaded"`
		Changed  []string `json:"changed"`
	}{Reloaded: true, Changed: changed})
}

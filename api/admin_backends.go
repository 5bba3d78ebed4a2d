package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/llmgate/llmgate/node"
)

// backendsRoute serves GET /admin/backends (SPEC §9): each backend's circuit
// as this node sees it.
func (a *API) backendsRoute(e *echo.Echo) {
	e.GET("/admin/backends", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string][]node.BackendStatus{"backends": a.gw.Backends()})
	})
}

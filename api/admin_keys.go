package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/llmgate/llmgate/identity"
	"github.com/llmgate/llmgate/internal/openai"
)

// KeyAdmin is what the run-time key routes need (*identity.Keys).
type KeyAdmin interface {
	Create(ctx context.Context, consumer string, expiresAt time.Time, description string) (identity.NewKey, error)
	List(ctx context.Context, consumer string) ([]identity.KeyInfo, error)
	Revoke(ctx context.Context, consumer, id string) error
}

// adminKeyRoutes binds /admin/consumers/{name}/keys (SPEC §9).
func (a *API) adminKeyRoutes(e *echo.Echo) {
	create, list, revoke := a.keyCreate, a.keyList, a.keyRevoke
	if a.opts.Keys == nil {
		off := notRunning("Run-time keys are not enabled on this node.")
		create, list, revoke = off, off, off
	}
	e.POST("/admin/consumers/:name/keys", create)
	e.GET("/admin/consumers/:name/keys", list)
	e.DELETE("/admin/consumers/:name/keys/:id", revoke)
}

func (a *API) keyCreate(c echo.Context) error {
	var body struct {
		ExpiresAt   *time.Time `json:"expires_at"`
		Description string     `json:"description"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		return adminError(c, http.StatusBadRequest, openai.CodeInvalidRequest,
			"The body must be a JSON object with optional \"expires_at\" (RFC 3339) and \"description\": "+err.Error())
	}
	var exp time.Time
	if body.ExpiresAt != nil {
		exp = *body.ExpiresAt
	}
	k, err := a.opts.Keys.Create(c.Request().Context(), c.Param("name"), exp, body.Description)
	if err != nil {
		return a.keyError(c, err)
	}
	c.Response().Header().Set("Cache-Control", "no-store") // the key is in this answer only
	return c.JSON(http.StatusCreated, k)
}

func (a *API) keyList(c echo.Context) error {
	keys, err := a.opts.Keys.List(c.Request().Context(), c.Param("name"))
	if err != nil {
		return a.keyError(c, err)
	}
	return c.JSON(http.StatusOK, map[string][]identity.KeyInfo{"keys": keys})
}

func (a *API) keyRevoke(c echo.Context) error {
	if err := a.opts.Keys.Revoke(c.Request().Context(), c.Param("name"), c.Param("id")); err != nil {
		return a.keyError(c, err)
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *API) keyError(c echo.Context, err error) error {
	switch {
	case errors.Is(err, identity.ErrUnknownConsumer):
		return adminError(c, http.StatusNotFound, openai.CodeNotFound, "No consumer named '"+c.Param("name")+"'.")
	case errors.Is(err, identity.ErrUnknownKey):
		return adminError(c, http.StatusNotFound, openai.CodeNotFound, "Consumer '"+c.Param("name")+"' has no key with id '"+c.Param("id")+"'.")
	case errors.Is(err, identity.ErrInvalid):
		return adminError(c, http.StatusBadRequest, openai.CodeInvalidRequest, err.Error())
	}
	a.log.Error("run-time key operation failed", "consumer", c.Param("name"), "err", err)
	return adminError(c, http.StatusInternalServerError, openai.CodeInternal, "The key operation failed: "+err.Error())
}

package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/llmgate/llmgate/index"
	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/quota"
	"github.com/llmgate/llmgate/verify"
)

// CacheAdmin is what the admin routes need from the cache (*index.Cache).
type CacheAdmin interface {
	Stats() index.Stats
	List(ctx context.Context, partition, route string, limit int, cursor string) ([]*index.Entry, string, error)
	Get(ctx context.Context, id string) (*index.Entry, bool)
	Delete(ctx context.Context, id string) (bool, error)
	Purge(ctx context.Context, partition, route string) (int, error)
}

// QuotaAdmin is what the admin routes need from token accounting (*quota.Limiter).
type QuotaAdmin interface {
	List(ctx context.Context) []quota.Status
	Status(ctx context.Context, consumer string) (quota.Status, bool)
	SetLimits(ctx context.Context, consumer string, tpm, quotaTokens *int64) (quota.Status, error)
}

func (a *API) adminStateRoutes(e *echo.Echo) {
	// Whether the node runs a cache and token accounting is fixed when the
	// API is built, so each route is bound once, to its handler or to a 404:
	// the handlers need not check.
	needCache := func(h echo.HandlerFunc) echo.HandlerFunc {
		if a.opts.Cache == nil {
			return notRunning("The cache is not enabled on this node (cache.enabled: false).")
		}
		return h
	}
	needQuota := func(h echo.HandlerFunc) echo.HandlerFunc {
		if a.opts.Quota == nil {
			return notRunning("Token accounting is not running on this node.")
		}
		return h
	}
	e.GET("/admin/cache/stats", needCache(a.cacheStats))
	e.GET("/admin/cache/entries", needCache(a.cacheEntries))
	e.GET("/admin/cache/entries/:id", needCache(a.cacheEntry))
	e.DELETE("/admin/cache/entries/:id", needCache(a.cacheDelete))
	e.DELETE("/admin/cache", needCache(a.cachePurge))
	e.POST("/admin/cache/search", needCache(a.cacheSearch))
	e.GET("/admin/quota", needQuota(a.quotaList))
	e.GET("/admin/quota/:consumer", needQuota(a.quotaGet))
	e.PUT("/admin/quota/:consumer", needQuota(a.quotaPut))
}

// notRunning answers 404 for the routes of a part the node runs without.
func notRunning(msg string) echo.HandlerFunc {
	return func(c echo.Context) error {
		return adminError(c, http.StatusNotFound, openai.CodeNotFound, msg)
	}
}

func adminError(c echo.Context, status int, code, msg string) error {
	typ := "invalid_request_error"
	if status >= 500 {
		typ = "server_error"
	}
	(&openai.Error{Status: status, Type: typ, Code: code, Message: msg}).Write(c.Response())
	return nil
}

// entryJSON is a cache entry as the admin API shows it (SPEC §9).
type entryJSON struct {
	ID        string          `json:"id"`
	Route     string          `json:"route"`
	Partition string          `json:"partition"`
	Prompt    string          `json:"prompt"`
	CreatedAt time.Time       `json:"created_at"`
	ExpiresAt time.Time       `json:"expires_at"`
	Hits      uint64          `json:"hits"`
	Response  json.RawMessage `json:"response,omitempty"`
}

func toEntryJSON(e *index.Entry, withResponse bool) entryJSON {
	j := entryJSON{ID: e.ID, Route: e.Space.Route, Partition: e.Space.Partition, Prompt: e.Prompt,
		CreatedAt: e.CreatedAt.UTC(), ExpiresAt: e.ExpiresAt.UTC(), Hits: e.Hits}
	if withResponse && json.Valid(e.Response) {
		j.Response = e.Response
	}
	return j
}

func (a *API) cacheStats(c echo.Context) error {
	st := a.opts.Cache.Stats()
	v, ok := a.gw.VerifyStats(c.Request().Context())
	if !ok {
		return c.JSON(http.StatusOK, st)
	}
	// Verified matching adds its counters, the online precision estimate per
	// route and the learned thresholds.
	return c.JSON(http.StatusOK, struct {
		index.Stats
		Verify verify.Stats `json:"verify"`
	}{st, v})
}

func (a *API) cacheEntries(c echo.Context) error {
	q := c.QueryParams()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return adminError(c, http.StatusBadRequest, openai.CodeInvalidRequest, "limit must be a number from 1 to 1000.")
		}
		limit = n
	}
	list, next, err := a.opts.Cache.List(c.Request().Context(), q.Get("partition"), q.Get("route"), limit, q.Get("cursor"))
	if err != nil {
		return adminError(c, http.StatusInternalServerError, openai.CodeInternal, "Listing cache entries: "+err.Error())
	}
	out := struct {
		Entries    []entryJSON `json:"entries"`
		NextCursor string      `json:"next_cursor"`
	}{Entries: make([]entryJSON, 0, len(list)), NextCursor: next}
	for _, e := range list {
		out.Entries = append(out.Entries, toEntryJSON(e, false))
	}
	return c.JSON(http.StatusOK, out)
}

func (a *API) cacheEntry(c echo.Context) error {
	e, ok := a.opts.Cache.Get(c.Request().Context(), c.Param("id"))
	if !ok {
		return adminError(c, http.StatusNotFound, openai.CodeNotFound, "No cache entry with id '"+c.Param("id")+"'.")
	}
	return c.JSON(http.StatusOK, toEntryJSON(e, true))
}

func (a *API) cacheDelete(c echo.Context) error {
	found, err := a.opts.Cache.Delete(c.Request().Context(), c.Param("id"))
	if err != nil {
		return adminError(c, http.StatusInternalServerError, openai.CodeInternal, "Deleting cache entry: "+err.Error())
	}
	if !found {
		return adminError(c, http.StatusNotFound, openai.CodeNotFound, "No cache entry with id '"+c.Param("id")+"'.")
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *API) cachePurge(c echo.Context) error {
	n, err := a.opts.Cache.Purge(c.Request().Context(), c.QueryParam("partition"), c.QueryParam("route"))
	if err != nil {
		return adminError(c, http.StatusInternalServerError, openai.CodeInternal, "Purging the cache: "+err.Error())
	}
	return c.JSON(http.StatusOK, map[string]int{"deleted": n})
}

func (a *API) cacheSearch(c echo.Context) error {
	var body struct {
		Route     string           `json:"route"`
		Partition string           `json:"partition"`
		Messages  []openai.Message `json:"messages"`
		K         int              `json:"k"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, a.opts.MaxBodyBytes))
	if err := dec.Decode(&body); err != nil {
		return adminError(c, http.StatusBadRequest, openai.CodeInvalidRequest, "The body must be a JSON object {\"route\",\"partition\",\"messages\"}: "+err.Error())
	}
	if body.Route == "" || body.Partition == "" || len(body.Messages) == 0 {
		return adminError(c, http.StatusBadRequest, openai.CodeInvalidRequest, "route, partition and messages are required.")
	}
	k := body.K
	if k <= 0 || k > 100 {
		k = 5
	}
	matches, err := a.gw.SearchCache(c.Request().Context(), body.Route, body.Partition, body.Messages, k)
	if err != nil {
		return adminError(c, http.StatusBadRequest, openai.CodeInvalidRequest, err.Error())
	}
	type match struct {
		ID       string  `json:"id"`
		Distance float32 `json:"distance"`
		Prompt   string  `json:"prompt"`
	}
	out := struct {
		Matches []match `json:"matches"`
	}{Matches: make([]match, 0, len(matches))}
	for _, m := range matches {
		out.Matches = append(out.Matches, match{ID: m.ID, Distance: m.Distance, Prompt: m.Prompt})
	}
	return c.JSON(http.StatusOK, out)
}

func (a *API) quotaList(c echo.Context) error {
	list := a.opts.Quota.List(c.Request().Context())
	if list == nil {
		list = []quota.Status{}
	}
	return c.JSON(http.StatusOK, map[string][]quota.Status{"consumers": list})
}

func (a *API) quotaGet(c echo.Context) error {
	s, ok := a.opts.Quota.Status(c.Request().Context(), c.Param("consumer"))
	if !ok {
		return adminError(c, http.StatusNotFound, openai.CodeNotFound, "No consumer named '"+c.Param("consumer")+"'.")
	}
	return c.JSON(http.StatusOK, s)
}

func (a *API) quotaPut(c echo.Context) error {
	var body struct {
		TPM         *int64 `json:"tpm"`
		QuotaTokens *int64 `json:"quota_tokens"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return adminError(c, http.StatusBadRequest, openai.CodeInvalidRequest, "The body must be a JSON object with \"tpm\" and/or \"quota_tokens\": "+err.Error())
	}
	if body.TPM == nil && body.QuotaTokens == nil {
		return adminError(c, http.StatusBadRequest, openai.CodeInvalidRequest, "Give \"tpm\", \"quota_tokens\" or both.")
	}
	if (body.TPM != nil && *body.TPM < 0) || (body.QuotaTokens != nil && *body.QuotaTokens < 0) {
		return adminError(c, http.StatusBadRequest, openai.CodeInvalidRequest, "Limits must not be negative (0 means unlimited).")
	}
	s, err := a.opts.Quota.SetLimits(c.Request().Context(), c.Param("consumer"), body.TPM, body.QuotaTokens)
	if errors.Is(err, quota.ErrUnknownConsumer) {
		return adminError(c, http.StatusNotFound, openai.CodeNotFound, "No consumer named '"+c.Param("consumer")+"'.")
	}
	if errors.Is(err, quota.ErrInvalidLimits) {
		return adminError(c, http.StatusBadRequest, openai.CodeInvalidRequest, err.Error())
	}
	if err != nil {
		return adminError(c, http.StatusInternalServerError, openai.CodeInternal, "Changing limits: "+err.Error())
	}
	return c.JSON(http.StatusOK, s)
}

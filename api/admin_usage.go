package api

import (
	"context"
	"encoding/csv"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/usage"
)

// UsageAdmin is what /admin/usage needs: implemented by *usage.History.
type UsageAdmin interface {
	Query(ctx context.Context, q usage.Query) ([]usage.Line, error)
}

// usageRoute serves GET /admin/usage (SPEC §9): JSON, or CSV when the
// client accepts text/csv.
func (a *API) usageRoute(e *echo.Echo) {
	e.GET("/admin/usage", func(c echo.Context) error {
		if a.opts.Usage == nil {
			return adminError(c, http.StatusNotFound, openai.CodeNotFound, "This node keeps no usage history.")
		}
		q, msg := parseUsageQuery(c.Request(), a.now())
		if msg != "" {
			return adminError(c, http.StatusBadRequest, openai.CodeInvalidRequest, msg)
		}
		lines, err := a.opts.Usage.Query(c.Request().Context(), q)
		if err != nil {
			a.log.Warn("usage query failed", "err", err)
			return adminError(c, http.StatusServiceUnavailable, "usage_unavailable", "The usage history could not be read: "+err.Error())
		}
		cols := usageColumns(q.GroupBy)
		if strings.Contains(c.Request().Header.Get("Accept"), "text/csv") {
			return writeUsageCSV(c, cols, lines)
		}
		rows := make([]map[string]any, len(lines))
		for i, l := range lines {
			row := make(map[string]any, len(cols))
			for _, col := range cols {
				row[col] = usageValue(l, col)
			}
			rows[i] = row
		}
		return c.JSON(http.StatusOK, map[string]any{"rows": rows})
	})
}

// parseUsageQuery reads from, to (RFC 3339; default the last 24 hours),
// interval (hour or day; default hour) and group_by (default consumer,route).
func parseUsageQuery(r *http.Request, now time.Time) (usage.Query, string) {
	v := r.URL.Query()
	q := usage.Query{To: now, Interval: time.Hour, GroupBy: []string{usage.ByConsumer, usage.ByRoute}}
	if s := v.Get("to"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return q, "to: not an RFC 3339 time: " + s
		}
		q.To = t
	}
	q.From = q.To.Add(-24 * time.Hour)
	if s := v.Get("from"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return q, "from: not an RFC 3339 time: " + s
		}
		q.From = t
	}
	switch v.Get("interval") {
	case "", "hour":
	case "day":
		q.Interval = 24 * time.Hour
	default:
		return q, "interval: must be hour or day"
	}
	if g, ok := v["group_by"]; ok {
		q.GroupBy = nil
		for _, f := range strings.Split(strings.Join(g, ","), ",") {
			if f = strings.TrimSpace(f); f != "" {
				q.GroupBy = append(q.GroupBy, f)
			}
		}
	}
	if err := q.Validate(); err != nil {
		return q, err.Error()
	}
	return q, ""
}

// usageColumns are a row's fields: start, the grouped fields, the totals.
func usageColumns(groupBy []string) []string {
	cols := append([]string{"start"}, groupBy...)
	return append(cols, "requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cache_hits", "tokens_saved", "cost_usd", "saved_usd", "refused")
}

func usageValue(l usage.Line, col string) any {
	switch col {
	case "start":
		return l.Start.Format(time.RFC3339)
	case usage.ByConsumer:
		return l.Consumer
	case usage.ByRoute:
		return l.Route
	case usage.ByUser:
		return l.User
	case "requests":
		return l.Requests
	case "prompt_tokens":
		return l.Prompt
	case "completion_tokens":
		return l.Completion
	case "cached_tokens":
		return l.Cached
	case "cache_hits":
		return l.CacheHits
	case "tokens_saved":
		return l.Saved
	case "cost_usd":
		return l.CostUSD()
	case "saved_usd":
		return l.SavedUSD()
	case "refused":
		return l.Refused
	}
	return nil
}

func writeUsageCSV(c echo.Context, cols []string, lines []usage.Line) error {
	w := c.Response()
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	_ = cw.Write(cols)
	rec := make([]string, len(cols))
	for _, l := range lines {
		for i, col := range cols {
			switch v := usageValue(l, col).(type) {
			case string:
				rec[i] = v
			case int64:
				rec[i] = strconv.FormatInt(v, 10)
			case float64:
				rec[i] = strconv.FormatFloat(v, 'f', -1, 64)
			}
		}
		_ = cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}

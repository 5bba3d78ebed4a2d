package usage

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// Query asks for the cluster-wide history between From and To (From's hour
// included, To excluded), in buckets of Interval (an hour or a day, UTC),
// grouped by the named fields (consumer, route, user; none = one line per
// bucket).
type Query struct {
	From, To time.Time
	Interval time.Duration
	GroupBy  []string
}

// Grouping fields of a Query.
const (
	ByConsumer = "consumer"
	ByRoute    = "route"
	ByUser     = "user"
)

// Line is one bucket of a query's answer: the sum over every origin; the
// fields not grouped by are empty.
type Line struct {
	Start                 time.Time
	Consumer, Route, User string
	Totals
}

// CostUSD is the line's cost in US dollars.
func (l Line) CostUSD() float64 { return float64(l.CostNano) / 1e9 }

// SavedUSD is what the line's cache hits would have cost at the route's price.
func (l Line) SavedUSD() float64 { return float64(l.SavedNano) / 1e9 }

// Validate reports the first problem with q.
func (q Query) Validate() error {
	if q.Interval != time.Hour && q.Interval != 24*time.Hour {
		return fmt.Errorf("interval must be hour or day")
	}
	if !q.To.After(q.From) {
		return fmt.Errorf("to must be after from")
	}
	for _, g := range q.GroupBy {
		if g != ByConsumer && g != ByRoute && g != ByUser {
			return fmt.Errorf("group_by: %q is not consumer, route or user", g)
		}
	}
	return nil
}

// Query answers q from this node's copy of every origin's rows, sorted by
// start, then the grouped fields.
func (h *History) Query(ctx context.Context, q Query) ([]Line, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	if err := h.Flush(ctx); err != nil {
		return nil, err
	}
	rows, err := h.scan(hourOf(q.From), hourOf(q.To.Add(time.Hour-time.Nanosecond)))
	if err != nil {
		return nil, err
	}
	return Aggregate(rows, q), nil
}

// Aggregate sums rows into q's buckets and groups.
func Aggregate(rows []Row, q Query) []Line {
	var by [3]bool
	for _, g := range q.GroupBy {
		switch g {
		case ByConsumer:
			by[0] = true
		case ByRoute:
			by[1] = true
		case ByUser:
			by[2] = true
		}
	}
	type groupKey struct {
		start                 int64
		consumer, route, user string
	}
	sums := map[groupKey]*Totals{}
	for _, r := range rows {
		start := r.Hour
		if q.Interval == 24*time.Hour {
			start -= ((start % 86400) + 86400) % 86400
		}
		k := groupKey{start: start}
		if by[0] {
			k.consumer = r.Consumer
		}
		if by[1] {
			k.route = r.Route
		}
		if by[2] {
			k.user = r.User
		}
		t := sums[k]
		if t == nil {
			t = &Totals{}
			sums[k] = t
		}
		t.add(r.Totals)
	}
	lines := make([]Line, 0, len(sums))
	for k, t := range sums {
		lines = append(lines, Line{Start: time.Unix(k.start, 0).UTC(), Consumer: k.consumer, Route: k.route, User: k.user, Totals: *t})
	}
	slices.SortFunc(lines, func(a, b Line) int {
		return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.Consumer, b.Consumer), cmp.Compare(a.Route, b.Route), cmp.Compare(a.User, b.User))
	})
	return lines
}

// Package telemetry owns what a node tells its operator about each
// data-plane request: the request log (one JSON line per request, refusals
// included) and the per-consumer Prometheus series derived from it.
//
// The front end hands every finished request to an Observer as a Request
// record, once, after the answer went out. Observers must not block the
// request: the log writes one line through slog, the metrics increment
// counters; anything slower (usage history, export) is queued by its owner.
//
// What it must not touch: credentials. A Request carries no key, token or
// header; captured content (capture_content) is the request body and the
// answer, capped, never the headers that carry credentials.
package telemetry

// Package edge hardens llmgate's HTTP listeners against clients that are slow,
// silent or hostile: it builds the http.Server of a listener (header and
// whole-request read deadlines counted from the request's first byte), guards
// every handler so an unread request body never holds a connection (the rest
// of an oversized one is discarded for at most 5 s, so its sender reads the
// refusal instead of a reset), and caps the connections a listener serves at
// once.
//
// It owns connection-level limits only. It knows nothing of routes, consumers
// or the OpenAI wire format beyond the one refusal it writes itself, and it
// must not interpret or rewrite request bodies: the handlers do that; it only
// discards what a handler left unread.
package edge

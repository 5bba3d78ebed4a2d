// Package api is llmgate's HTTP front: the data plane (OpenAI and Azure OpenAI
// routes, health and readiness) and the admin listener (bearer-token REST and
// /metrics), both on echo.
//
// It owns request parsing and the wire contract: where a consumer key may be,
// the body limit, validation into the OpenAI error format, x-request-id and
// the request metrics. It turns each model request into a node.Call and hands
// it to the node's pipeline; it holds no gateway state of its own and never
// talks to backends.
package api

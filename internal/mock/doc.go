// Package mock is a simulated Azure OpenAI / OpenAI backend (SPEC §10): the
// upstream that the demo, the tests and the benchmarks run the gateway
// against, and what `llmgate mock-upstream` serves.
//
// A Server is an http.Handler that answers the Azure routes
// (/openai/deployments/{deployment}/chat/completions and …/embeddings, with a
// required api-version) and the OpenAI routes (/v1/chat/completions,
// /v1/embeddings, /v1/models) the way the real services do, closely enough
// for a gateway to be exercised end to end:
//
//   - chat answers are deterministic English text, the same for the same
//     messages, exactly max_tokens (or max_completion_tokens) tokens long
//     with finish_reason "length", else DefaultCompletionTokens tokens with
//     finish_reason "stop"; n choices; streamed as Server-Sent Events when
//     asked, with the usage chunk only when stream_options.include_usage;
//   - usage holds real counts: prompt_tokens by package tokens under OpenAI's
//     chat rule, completion_tokens of the generated text (built one token per
//     word or full stop, so its length is its count);
//   - embeddings come from the gateway's own local embedder (package embed),
//     so a cache configured with an embeddings route behaves like the
//     built-in one; DefaultDimensions long, shorter when the request names
//     fewer dimensions (truncated and renormalised);
//   - its own tokens-per-minute limit over a sliding 60-second window, with
//     Azure's 429 (retry-after-ms, Retry-After) and x-ratelimit-remaining-*
//     headers; a configurable share of 500s; time to first token and a token
//     rate; an optional API key. Errors have Azure's body on Azure routes and
//     OpenAI's on OpenAI routes.
//
// It also speaks what today's clients send:
//
//   - the Responses API (POST /v1/responses, GET and DELETE
//     /v1/responses/{id}, POST …/{id}/cancel, GET …/{id}/input_items):
//     answers with usage (input_tokens, output_tokens), streamed as typed
//     events (response.created … response.completed, or response.incomplete
//     when max_output_tokens cut the answer); responses are stored (unless
//     "store": false) so they can be fetched, deleted, listed and continued
//     with previous_response_id; "background": true answers in_progress at
//     once and can be cancelled until its tokens would have been generated;
//   - Azure's v1 surface: the same OpenAI routes under /openai/v1/ (model in
//     the body, no api-version), GET /openai/models and the /openai/responses
//     routes with an api-version;
//   - tool calls: a request with tools gets a function call (arguments built
//     from the tool's JSON schema) when tool_choice forces one, or leaves it
//     to the model and the dialog does not end with a tool result;
//   - JSON output for response_format (chat) or text.format (Responses)
//     json_object and json_schema (a value with every property of the schema).
//
// Every answer carries x-mock-backend (the server's name, so a test sees who
// served it) and a fresh apim-request-id / x-request-id.
//
// # State and concurrency
//
// A Server is safe for concurrent use. Its configuration is fixed at New
// except the fail rate and latency, which are atomics so a demo can fail a
// backend at run time. The only shared mutable state is the TPM window,
// the stored responses and the fail-rate random source, each behind its own mutex and touched for a
// few hundred nanoseconds per request; nothing is global. This is test
// infrastructure: simple locking is preferred here over the actor pattern
// the gateway's own components use.
//
// Clocks: the injectable Options.Now drives the TPM window and the created
// timestamps, so tests move time without sleeping; latency and token pacing
// use real timers, since they exist to be felt by a client.
package mock

// Package openai holds the OpenAI / Azure OpenAI wire format as llmgate needs it:
// request parsing and validation, the error body, and a Server-Sent Events reader.
//
// It owns no state and performs no I/O beyond the readers it is handed. Parsing
// never mutates the bytes it is given: the gateway forwards the client's body
// byte for byte and only reads it here to route, validate and (later) count it.
// A chat request is read in one pass (scan.go) when its shape is plain, by
// encoding/json otherwise, with the same result; Valid is json.Valid, faster.
package openai

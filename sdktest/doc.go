// Package sdktest runs the official OpenAI SDKs — openai-go here, the openai
// npm package through node — against a real llmgate node in front of the
// mock upstream. It is its own module, so the gateway's go.mod stays free of
// the SDKs. Run it with `cd sdktest && go test ./...` (CI does).
package sdktest

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// demoResponsesSteps show the Responses API through the cluster: a
// response created on gw-1, a streamed one relayed as typed events, a
// follow-up with previous_response_id sent to gw-2 that must reach the
// backend holding the response, and the same id refused to another
// consumer as if it did not exist.
func demoResponsesSteps(nodes []*runningNode) []demoStep {
	var id, holder string // the first response and the backend that holds it
	follow := func() string {
		return `{"model":"gpt-4o-mini","previous_response_id":"` + id + `","input":"And how often should I do it?"}`
	}
	return []demoStep{
		{title: "responses: create (POST /v1/responses)", method: "POST", path: "/v1/responses",
			body: `{"model":"gpt-4o-mini","input":"Name one reason to put a gateway in front of an LLM"}`,
			key:  demoKey, wantStatus: 200,
			check: func(r *demoRow, body []byte) bool {
				var obj struct {
					ID     string `json:"id"`
					Status string `json:"status"`
				}
				if json.Unmarshal(body, &obj) != nil || !strings.HasPrefix(obj.ID, "resp_") || obj.Status != "completed" {
					return false
				}
				id, holder = obj.ID, r.backend
				return holder != ""
			}},
		{title: "responses: streamed (typed SSE events)", method: "POST", path: "/v1/responses",
			body: `{"model":"gpt-4o-mini","stream":true,"input":"Stream me a haiku about quotas"}`,
			key:  demoKey, wantStatus: 200, stream: true},
		{title: "responses: previous_response_id on gw-2 (affinity)", node: 1, method: "POST", path: "/v1/responses",
			bodyFn: follow, key: demoKey, wantStatus: 200,
			before: func() { waitOwnerKnown(nodes[1], id, 5*time.Second) },
			check: func(r *demoRow, body []byte) bool {
				r.detail = "follows " + shortID(id) + " (on " + dash(holder) + "): " + r.detail
				return r.backend == holder
			}},
		{title: "responses: same id, other consumer (404)", node: 1, method: "POST", path: "/v1/responses",
			bodyFn: follow, key: demoKeyB, wantStatus: http.StatusNotFound},
	}
}

// waitOwnerKnown waits until n has learnt who owns the response id (the
// record travels on the cluster's reliable channel).
func waitOwnerKnown(n *runningNode, id string, within time.Duration) {
	deadline := time.Now().Add(within)
	for id != "" && time.Now().Before(deadline) {
		if _, ok := n.state.owners.Lookup(context.Background(), id); ok {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// summarizeResponse shortens a Responses API object for the report: its id
// and the start of its output text.
func summarizeResponse(body []byte) (string, bool) {
	var obj struct {
		Object string `json:"object"`
		ID     string `json:"id"`
		Output []struct {
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
		} `json:"output"`
	}
	if json.Unmarshal(body, &obj) != nil || obj.Object != "response" {
		return "", false
	}
	text := ""
	if len(obj.Output) > 0 && len(obj.Output[0].Content) > 0 {
		text = obj.Output[0].Content[0].Text
	}
	if len(text) > 30 {
		text = text[:30] + "…"
	}
	return shortID(obj.ID) + " “" + text + "”", true
}

func shortID(id string) string {
	if len(id) > 14 {
		return id[:14] + "…"
	}
	return id
}

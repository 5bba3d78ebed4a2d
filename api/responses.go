package api

import (
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/node"
	"github.com/llmgate/llmgate/telemetry"
)

// routeResponsesAndAzureV1 adds the Responses API (create and its
// follow-ups) in the OpenAI style (/v1/…), Azure's v1 style (/openai/v1/…,
// model in the body, no api-version) and Azure's preview style
// (/openai/responses?api-version=…), and Azure's v1 chat, embeddings and
// model routes (SPEC §4).
func (a *API) routeResponsesAndAzureV1(e *echo.Echo) {
	e.POST("/openai/v1/chat/completions", a.openAIStyle(openai.OpChat))
	e.POST("/openai/v1/embeddings", a.openAIStyle(openai.OpEmbeddings))
	e.GET("/openai/v1/models", a.models)
	e.GET("/openai/v1/models/:model", a.model)
	e.GET("/openai/models", a.models)
	for _, prefix := range []string{"/v1", "/openai/v1", "/openai"} {
		e.POST(prefix+"/responses", a.openAIStyle(openai.OpResponses))
		e.GET(prefix+"/responses/:id", a.followUp(""))
		e.DELETE(prefix+"/responses/:id", a.followUp(""))
		e.POST(prefix+"/responses/:id/cancel", a.followUp("cancel"))
		e.GET(prefix+"/responses/:id/input_items", a.followUp("input_items"))
	}
}

// followUp serves a call on a stored response (sub: "", "cancel",
// "input_items"): authenticate, then the node sends it to the backend that
// holds the response, if it is the caller's.
func (a *API) followUp(sub string) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := a.now()
		req, w := c.Request(), c.Response()
		label := routeLabel{op: "responses", route: "unknown"}
		rec := telemetry.Request{Time: start, RequestID: c.Get("request_id").(string), Op: "responses." + followUpName(req.Method, sub), Cache: "bypass"}
		w.Header().Set(node.HeaderCache, "bypass")
		consumer, aerr := a.authenticate(req)
		if aerr != nil {
			aerr.Write(w)
			total := a.now().Sub(start)
			a.metrics.request(label, aerr.Status, "", total, 0)
			rec.Status, rec.Refusal, rec.Duration = aerr.Status, aerr.Code, total
			a.observe(req, &rec)
			return nil
		}
		rec.Consumer, rec.Credential, rec.User = consumer.Name, credentialLabel(consumer), consumer.User
		if req.Body != nil && req.Method == http.MethodPost {
			// cancel takes no parameters; the body is read (bounded) and dropped.
			if _, e := a.readBody(w, req); e != nil {
				e.Write(w)
				return nil
			}
		}
		f := &node.FollowUp{Method: req.Method, ID: c.Param("id"), Sub: sub, Query: req.URL.Query(), Consumer: consumer,
			APIVersion: req.URL.Query().Get("api-version"), RequestID: rec.RequestID, Header: req.Header}
		out := a.gw.ServeFollowUp(req.Context(), w, f)
		total := a.now().Sub(start)
		a.metrics.request(label, out.Status, out.Backend, total, max(total-out.Upstream, 0))
		rec.Backend, rec.Status, rec.Refusal, rec.Duration, rec.Upstream = out.Backend, out.Status, out.Refusal, total, out.Upstream
		a.observe(req, &rec)
		if out.Status >= 500 {
			a.log.Warn("request failed", "request_id", rec.RequestID, "consumer", consumer.Name, "op", rec.Op, "status", out.Status, "backend", out.Backend)
		} else if a.log.Enabled(req.Context(), slog.LevelDebug) {
			a.log.Debug("request", "request_id", rec.RequestID, "consumer", consumer.Name, "op", rec.Op, "status", out.Status, "backend", out.Backend)
		}
		return nil
	}
}

func followUpName(method, sub string) string {
	if sub != "" {
		return sub
	}
	if method == http.MethodDelete {
		return "delete"
	}
	return "get"
}

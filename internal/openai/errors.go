package openai

import (
	"encoding/json"
	"net/http"
)

// Error codes of the data plane (SPEC §4). They are part of the contract.
const (
	CodeInvalidAPIKey      = "invalid_api_key"
	CodeModelNotFound      = "model_not_found"
	CodeInvalidRequest     = "invalid_request_error"
	CodeRequestTooLarge    = "request_too_large"
	CodeRateLimitExceeded  = "rate_limit_exceeded"
	CodeQuotaExceeded      = "quota_exceeded"
	CodeBackendUnavailable = "backend_unavailable"
	CodeNotFound           = "not_found"
	CodeMethodNotAllowed   = "method_not_allowed"
	CodeInternal           = "internal_error"
)

// Error is an answer the gateway gives itself, rendered as the OpenAI error body
// {"error":{"message","type","param","code"}}.
type Error struct {
	Status  int
	Type    string
	Code    string
	Message string
	Param   string
	// Header holds extra response headers, e.g. Retry-After.
	Header http.Header
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Body returns the JSON error body.
func (e *Error) Body() []byte {
	var param *string
	if e.Param != "" {
		param = &e.Param
	}
	b, _ := json.Marshal(errorBody{Error: errorDetail{Message: e.Message, Type: e.Type, Param: param, Code: e.Code}})
	return b
}

// Write renders the error on w.
func (e *Error) Write(w http.ResponseWriter) {
	h := w.Header()
	for k, vs := range e.Header {
		h[k] = vs
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_, _ = w.Write(e.Body())
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

// BadRequest is a 400 invalid_request_error naming the offending parameter.
func BadRequest(param, msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: CodeInvalidRequest, Param: param, Message: msg}
}

// InvalidKey is the 401 for a missing or unknown consumer key.
func InvalidKey(msg string) *Error {
	return &Error{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: CodeInvalidAPIKey, Message: msg}
}

// ModelNotFound is the 404 for a route or deployment the gateway does not serve.
func ModelNotFound(name string) *Error {
	return &Error{Status: http.StatusNotFound, Type: "invalid_request_error", Code: CodeModelNotFound, Param: "model",
		Message: "The model or deployment '" + name + "' does not exist on this gateway."}
}

// TooLarge is the 413 for a body over the limit.
func TooLarge(limit int64) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Code: CodeRequestTooLarge,
		Message: "Request body exceeds the limit of " + itoa(limit) + " bytes."}
}

// Unavailable is the 503 when no backend of a route can take the request.
func Unavailable(msg string) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Type: "server_error", Code: CodeBackendUnavailable, Message: msg}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

package api

// The headers every model call reads or writes, in canonical form
// (http.CanonicalHeaderKey of the names, which TestCanonicalHeaders
// checks): read and set with them, a header costs no canonicalising copy of
// its name per request.
const (
	headerRequestIDKey = "X-Request-Id"    // node.HeaderRequestID
	headerCacheKey     = "X-Llmgate-Cache" // node.HeaderCache
	headerAPIKey       = "Api-Key"         // a consumer key, Azure's way
	headerAPIMKey      = "Ocp-Apim-Subscription-Key"
)

package api

import (
	"net/http"
	"testing"

	"github.com/llmgate/llmgate/node"
)

// TestCanonicalHeaders checks the canonical spellings the data plane reads
// and writes its headers with.
func TestCanonicalHeaders(t *testing.T) {
	for _, c := range []struct{ key, name string }{
		{headerRequestIDKey, node.HeaderRequestID},
		{headerCacheKey, node.HeaderCache},
		{headerAPIKey, "api-key"},
		{headerAPIMKey, "ocp-apim-subscription-key"},
	} {
		if want := http.CanonicalHeaderKey(c.name); c.key != want {
			t.Errorf("%q is not the canonical form of %q (%q)", c.key, c.name, want)
		}
	}
}

package node

import (
	"net/http"
	"strconv"
)

// The headers every answer of a whole call carries (and its upstream
// request), in canonical form (http.CanonicalHeaderKey of the Header*
// names, which TestCanonicalAnswerHeaders checks): set with them, a header
// costs no canonicalising copy of its name per request.
const (
	headerLimitTokensKey    = "X-Ratelimit-Limit-Tokens"
	headerRemainTokensKey   = "X-Ratelimit-Remaining-Tokens"
	headerTokensConsumedKey = "X-Llmgate-Tokens-Consumed"
	headerBackendKey        = "X-Llmgate-Backend"
	headerRequestIDKey      = "X-Request-Id"
	headerMSRequestIDKey    = "X-Ms-Client-Request-Id"
)

// setInts sets the headers keys[i] (canonical) to the decimal values
// vals[i], at most three, with one string and one slice for all of them
// rather than one of each per header.
func setInts(h http.Header, keys []string, vals ...int64) {
	var buf [3 * 20]byte
	var ends [3]int
	b := buf[:0]
	for i, v := range vals {
		b = strconv.AppendInt(b, v, 10)
		ends[i] = len(b)
	}
	s := string(b)
	vs := make([]string, len(vals))
	start := 0
	for i := range vals {
		vs[i] = s[start:ends[i]]
		start = ends[i]
		h[keys[i]] = vs[i : i+1 : i+1]
	}
}

// setHeadersCharged writes the admission's TPM headers (see setHeaders)
// and what the call was charged, for a whole answer written after settling.
func (a *admission) setHeadersCharged(h http.Header, charged int64) {
	if a.limit <= 0 {
		setInts(h, []string{headerTokensConsumedKey}, charged)
		return
	}
	setInts(h, []string{headerLimitTokensKey, headerRemainTokensKey, headerTokensConsumedKey}, a.limit, max(a.remain, 0), charged)
}

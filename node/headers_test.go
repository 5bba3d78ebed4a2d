package node

import (
	"net/http"
	"slices"
	"strconv"
	"testing"
)

// TestCanonicalAnswerHeaders checks the canonical spellings the answer's
// and the upstream request's headers are set with.
func TestCanonicalAnswerHeaders(t *testing.T) {
	for _, c := range []struct{ key, name string }{
		{headerLimitTokensKey, HeaderLimitTokens},
		{headerRemainTokensKey, HeaderRemainTokens},
		{headerTokensConsumedKey, HeaderTokensConsumed},
		{headerBackendKey, HeaderBackend},
		{headerRequestIDKey, HeaderRequestID},
		{headerMSRequestIDKey, "x-ms-client-request-id"},
	} {
		if want := http.CanonicalHeaderKey(c.name); c.key != want {
			t.Errorf("%q is not the canonical form of %q (%q)", c.key, c.name, want)
		}
	}
}

// TestChargedHeadersAreWhatSetWrites: the TPM and charge headers of a whole
// answer hold what Header.Set of each decimal value would, each its own
// value, and replace what was there.
func TestChargedHeadersAreWhatSetWrites(t *testing.T) {
	for _, tt := range []struct {
		name    string
		adm     admission
		charged int64
	}{
		{"no limit sets the charge alone", admission{}, 39},
		{"a limit sets all three", admission{limit: 1_000_000_000, remain: 999_999_961}, 39},
		{"a negative remainder is written as zero", admission{limit: 100, remain: -5}, 0},
		{"the largest values", admission{limit: 1<<63 - 1, remain: 1<<63 - 1}, 1<<63 - 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := http.Header{headerLimitTokensKey: {"stale"}, headerTokensConsumedKey: {"stale", "twice"}}
			tt.adm.setHeadersCharged(got, tt.charged)
			want := http.Header{headerLimitTokensKey: {"stale"}}
			if tt.adm.limit > 0 {
				want = http.Header{}
				want.Set(HeaderLimitTokens, itoa(tt.adm.limit))
				want.Set(HeaderRemainTokens, itoa(max(tt.adm.remain, 0)))
			}
			want.Set(HeaderTokensConsumed, itoa(tt.charged))
			if len(got) != len(want) {
				t.Fatalf("headers %v, want %v", got, want)
			}
			for k, vs := range want {
				if !slices.Equal(got[k], vs) {
					t.Errorf("%s = %q, want %q", k, got[k], vs)
				}
			}
			// Each value is its own: appending to one leaves the others.
			for k := range got {
				got[k] = append(got[k], "more")
			}
			for k, vs := range want {
				if !slices.Equal(got[k][:len(vs)], vs) {
					t.Errorf("after appending: %s = %q, want %q first", k, got[k], vs)
				}
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

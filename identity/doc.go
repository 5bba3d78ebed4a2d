// Package identity owns who a caller is, beyond the static keys of the
// configuration: consumer keys issued at run time (Keys) and OAuth2 / OIDC
// bearer tokens (JWT); and the gateway's own identity towards backends that
// take Microsoft Entra ID tokens (EntraToken, through azidentity).
//
// Tokens. Each auth.jwt issuer has a key set (keySet) fetched from its
// jwks_url or OIDC discovery: at start in the background, every
// refresh_interval, and for a token naming an unknown kid at most once per
// min_refresh_interval, one fetch shared by concurrent requests and bounded by
// fetch_timeout. A failed fetch keeps the cached keys. A JWT built by a
// configuration reload (JWTOptions.Previous) shares the key sets of the
// issuers whose key settings are unchanged (reference counted: the last JWT
// using one stops its fetches when it closes). Validation is
// golang-jwt's (algorithm allow-list without none or HMAC, exp required, nbf,
// iat, aud, leeway); iss picks the issuer, with Entra ID's v1 and v2 forms of
// one tenant treated as one. Tokens that passed are remembered by hash until
// they expire (at most 5 minutes).
//
// Run-time keys. A key is shown once, when it is created; every node stores
// only its record: the consumer, a short non-secret prefix, a random salt and
// SHA-256(salt || secret), its description, creation, expiry and revocation
// times. A key names its record (sk-lg-<id><secret>), so checking one is a
// map look-up by id and one hash compared in constant time. Records are
// persisted in Badger under store.PrefixKeys and exchanged with the other
// nodes as opaque payloads (Outgoing, Merge): news as soon as the cluster
// flushes (every 50 ms), the whole set on every push/pull and when a node
// joins, so a node that was down or partitioned catches up. Merging is
// idempotent and order-free: a record never changes except to become
// revoked, and a revocation, once seen, always wins.
//
// Concurrency: one goroutine (run) owns the records and is the only writer;
// requests authenticate against an immutable snapshot it publishes, so the
// request path takes no lock and never waits for a write.
//
// It must not touch HTTP routing, the request pipeline, or quota and cache
// state: api and node reach it through small interfaces, and cmd builds it.
package identity

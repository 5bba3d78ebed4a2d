// Package certs owns a node's TLS material: the certificate and key its
// listeners serve, the client CA its admin listener may require, and the CA
// bundle trusted for backends. It re-reads the certificate files when they
// change, so a rotated certificate is served on the next handshake without a
// restart, and keeps serving the last good one when a new file is broken or
// half-written.
//
// It knows nothing of HTTP: it hands out *tls.Config values. The current
// certificate and client CA pool are immutable values behind atomic
// pointers, replaced whole by the one goroutine that watches the files (or
// by Reload, or Set for a configuration reload); each handshake reads them
// and the minimum version afresh.
package certs

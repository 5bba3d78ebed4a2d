package telemetry

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// traceExport is the span export's settings from the OpenTelemetry
// exporters' standard variables, as the SDK's OTLP/HTTP exporter reads them.
type traceExport struct {
	headers http.Header
	timeout time.Duration // one export request's deadline
	gzip    bool
	tls     *tls.Config // nil: the system's roots, no client certificate
}

// traceExportEnv reads OTEL_EXPORTER_OTLP_{HEADERS,TIMEOUT,COMPRESSION,
// CERTIFICATE,CLIENT_CERTIFICATE,CLIENT_KEY}, each variable's TRACES_ form
// winning over the general one. A malformed value is an error naming the
// variable (headers excepted: the SDK skips a malformed pair).
func traceExportEnv(getenv func(string) string) (traceExport, error) {
	get := func(name string) (string, string) {
		v := "OTEL_EXPORTER_OTLP_TRACES_" + name
		if s := getenv(v); s != "" {
			return s, v
		}
		v = "OTEL_EXPORTER_OTLP_" + name
		return getenv(v), v
	}
	x := traceExport{timeout: 10 * time.Second}
	s, _ := get("HEADERS")
	x.headers = otlpHeaders(s)
	if s, v := get("TIMEOUT"); s != "" {
		ms, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || ms <= 0 {
			return x, fmt.Errorf("telemetry: %s=%q: want a positive number of milliseconds", v, s)
		}
		x.timeout = time.Duration(ms) * time.Millisecond
	}
	if s, v := get("COMPRESSION"); s != "" {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "gzip":
			x.gzip = true
		case "none":
		default:
			return x, fmt.Errorf("telemetry: %s=%q: want gzip or none", v, s)
		}
	}
	ca, caVar := get("CERTIFICATE")
	cert, certVar := get("CLIENT_CERTIFICATE")
	key, keyVar := get("CLIENT_KEY")
	if ca == "" && cert == "" && key == "" {
		return x, nil
	}
	x.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return x, fmt.Errorf("telemetry: %s: reading the collector's CA: %w", caVar, err)
		}
		x.tls.RootCAs = x509.NewCertPool()
		if !x.tls.RootCAs.AppendCertsFromPEM(pem) {
			return x, fmt.Errorf("telemetry: %s: %s holds no PEM certificate", caVar, ca)
		}
	}
	switch {
	case cert != "" && key != "":
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return x, fmt.Errorf("telemetry: %s and %s: loading the client certificate: %w", certVar, keyVar, err)
		}
		x.tls.Certificates = []tls.Certificate{pair}
	case cert != "":
		return x, fmt.Errorf("telemetry: %s is set without %s", certVar, keyVar)
	case key != "":
		return x, fmt.Errorf("telemetry: %s is set without %s", keyVar, certVar)
	}
	return x, nil
}

// Command check verifies everything in deploy/ that CI cannot run for real:
// it lints and renders the Helm chart with Helm itself (as a Go module),
// checks every rendered manifest against the Kubernetes API types (strict
// decoding) and the Kubernetes OpenAPI schema of the same release (the
// document published in the k8s.io/kubernetes module, validated the way
// kubectl's client-side validation does: unknown fields, missing required
// fields, wrong types), checks the
// compose file with the Compose specification's own loader, the systemd unit
// with systemd-analyze, the Dockerfile's required shape (and its build
// stage's `make build`, rehearsed on a copy of the build context: the
// binary must be static), and runs
// `llmgate config check` on every configuration the repository ships, with
// the flags and environment each deployment gives it.
//
// It is its own Go module so that Helm and the Kubernetes libraries stay out
// of the gateway's module. `make deploy-check` runs it; CI runs that.
package main

// Command check verifies everything in deploy/ that CI cannot run for real:
// it lints and renders the Helm chart with Helm itself (as a Go module),
// checks every rendered manifest against the Kubernetes API types, checks the
// compose file with the Compose specification's own loader, the systemd unit
// with systemd-analyze, the Dockerfile's required shape, and runs
// `llmgate config check` on every configuration the repository ships, with
// the flags and environment each deployment gives it.
//
// It is its own Go module so that Helm and the Kubernetes libraries stay out
// of the gateway's module. `make deploy-check` runs it; CI runs that.
package main

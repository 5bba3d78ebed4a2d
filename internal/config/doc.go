// Package config decodes and validates llmgate's YAML configuration (SPEC §3).
//
// It owns the typed Config and nothing else: it expands ${NAME} references from
// the environment, rejects unknown keys by name and line, fills defaults and
// checks cross references (routes → backends → deployments, unique keys). The
// runtime packages receive a validated Config and never see YAML.
package config

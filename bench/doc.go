// Package bench drives the benchmarks of SPEC §12 against real processes: it
// starts llmgate child processes from the running binary (a mock upstream,
// gateway nodes, alone or clustered, a bare reverse proxy), loads them over
// loopback HTTP, and reports latency, throughput, memory, how exactly a
// cluster holds a TPM limit and how fast it shares its cache.
//
// The benchmarks are run by `llmgate bench SCENARIO` (and `make bench`), never
// by `make test`: they take minutes, need free loopback ports and a quiet
// machine, and their numbers are measurements, not pass/fail results. The unit
// tests in this package cover only the pure helpers (percentiles, the load
// schedulers against an in-process server) and finish in about a second.
//
// What it owns: the child processes it starts and their temporary
// directories. Every process started is stopped (SIGTERM, then kill after a
// grace period) and waited for, and every temporary directory is removed,
// whether the run succeeds, fails or is cancelled through its context.
//
// Measurement model:
//   - Open-loop load sends requests on a fixed schedule whatever the answers
//     do, and measures each request's latency from its scheduled send time, so
//     a stalled target cannot hide its stall by slowing the generator down
//     (no coordinated omission).
//   - Closed-loop load runs a fixed number of workers that each send the next
//     request when the previous one is answered; completed requests per second
//     is the target's maximum throughput.
//   - The machine is assumed shared and noisy: targets are interleaved round
//     by round and the report gives medians across rounds.
//
// Concurrency: each load run owns its result slots; request goroutines write
// only their own slot and the run reads them after all have finished.
package bench

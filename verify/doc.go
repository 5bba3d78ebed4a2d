// Package verify owns verified matching for the semantic cache (SPEC §6,
// cache.verify): which semantic candidates a judge must confirm, the
// thresholds learned from the judge's verdicts, the audit of ordinary hits
// and the judge's token budget.
//
// A candidate the embedder finds within the wide radius (and the match guard
// accepts) is served at once when its distance is within the configured
// score_threshold or within the threshold learned for its partition;
// otherwise the judge is asked. The learned threshold of a partition
// (vCache-style) is the largest distance t such that, among the verdicts of
// candidates at distance ≤ t, the one-sided 95 % Wilson upper bound of the
// share judged "no" stays within MaxErrorRate, with at least MinVerdicts
// verdicts: it only grows as the evidence allows the error bound, and falls
// when "no" verdicts arrive. A sample (AuditRate) of the hits served without
// a judge is judged in the background: those verdicts feed the same
// statistics and an online precision estimate per route.
//
// Verdicts are persisted and shared through a Store (the node keeps them as
// cache entries of a reserved route, so the cluster's replication and
// catch-up carry them); the Verifier reloads the Store's verdicts every
// Reload interval, so a verdict made on one node moves the thresholds of all.
//
// A candidate the match guard refused on wording only (guard.Judgeable) is
// offered to the judge by Settle: no learned threshold vouches for it, the
// judge is always asked, and its verdict (Verdict.Soft) never moves a
// threshold. The node's radius (cache.verify.radius) bounds how far such
// candidates are looked for; bench cache --parts quality chooses it on the
// tuning half of the labelled pairs.
//
// A judge that fails, is slow (Timeout) or has spent its budget
// (TokensPerMinute) gives no verdict: the candidate is a miss.
//
// Concurrency: one goroutine (run) owns the verdicts, thresholds, audit
// counts and budget; callers send it messages. Judge calls run on the
// caller's goroutine (or a background one for audits), never on the actor.
//
// It must not know HTTP, the index or the cluster: the judge and the store
// are interfaces the node implements.
package verify

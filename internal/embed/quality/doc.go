// Package quality measures how well an embedder and the match guard serve a
// semantic cache, on labelled prompt pairs (PAWS and GPTCache, see
// shared/data/README.md and index/testdata/README.md): how many paraphrases
// hit the right entry, and how many hits are wrong, at each cosine-distance
// threshold. bench cache and the quality-floor test in index/guard use it.
//
// Method. Pairs are grouped into clusters: two pairs belong together when
// they share a text or the same bag of words (PAWS builds several pairs from
// one source sentence by swapping words). Every other cluster, in order of
// first appearance, is cached: side a of each of its pairs is stored (once per
// text). Then
//   - side b of each pair of a cached cluster is a query: label 1 (every
//     GPTCache pair) should hit, label 0 (a PAWS hard negative) must miss;
//     queries whose text is itself stored are skipped (the exact tier serves
//     them);
//   - both sides of every pair of an uncached cluster are queries that must
//     miss (related prompts whose own entry is absent).
//
// Each query's nearest entry (exact search) is a hit when its distance is at
// most the threshold and, with the guard on, guard.Check accepts it. A hit
// is right when the data labels the two texts a paraphrase, wrong when it
// labels them different or they are in different clusters, and unknown (not
// counted) when they share a cluster without a label.
//
// Everything is deterministic; nothing is shared between calls.
//
// What it owns: nothing beyond a call; Run builds its own index and maps and
// returns plain values.
package quality

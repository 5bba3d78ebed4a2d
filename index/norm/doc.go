// Package norm owns the normalised form of a dialog text, the key of the
// semantic cache's normalised tier (between the exact and the semantic
// tier): two prompts whose texts are equal after Text hit each other at
// once, without an embedding.
//
// Text keeps everything that can change an answer and drops only what
// cannot: the case of words (acronyms — two or more capitals — keep
// theirs: "US" is not "us"), sentence-final punctuation (. ? ! , before a
// space or the end; "3.5", "a.b", "!=" and "i++" keep theirs), runs of
// spaces inside a line (indentation at the start of a line is kept, since
// code depends on it), trailing spaces, typographic apostrophes, and a small
// set of meaning-preserving rewrites: "please" is dropped, "how can I"
// reads "how do I", "what's" reads "what is", and a turn opening "tell me
// the" reads "what is the". Turn separators (guard.TurnSeparator) are kept,
// so turns never merge.
//
// It must not touch the index, the guard or anything beyond its string:
// Text is a pure function, safe for concurrent use.
package norm

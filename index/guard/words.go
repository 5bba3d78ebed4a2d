package guard

// wordKind classifies a lower-cased word for the guard.
type wordKind uint8

const (
	kindOther       wordKind = iota
	kindNumber               // a cardinal number word: value in val
	kindOrdinal              // an ordinal number word: value in val
	kindScale                // hundred, thousand, …: multiplier in val
	kindNegation             // not, never, nobody, …
	kindComparative          // before, after, more, …: bit index in val
	kindFunction             // a function word (the, of, is, …); val > 0 marks a class compared by Check
	kindOpener               // a content word that often starts a sentence (explain, list, …)
)

// lookup classifies the lower-cased ASCII word w. The switch compiles to a
// binary search on the string and does not allocate.
func lookup(w []byte) (wordKind, float64) {
	switch string(w) {
	// cardinals
	case "zero":
		return kindNumber, 0
	case "one":
		return kindNumber, 1
	case "two":
		return kindNumber, 2
	case "three":
		return kindNumber, 3
	case "four":
		return kindNumber, 4
	case "five":
		return kindNumber, 5
	case "six":
		return kindNumber, 6
	case "seven":
		return kindNumber, 7
	case "eight":
		return kindNumber, 8
	case "nine":
		return kindNumber, 9
	case "ten":
		return kindNumber, 10
	case "eleven":
		return kindNumber, 11
	case "twelve", "dozen":
		return kindNumber, 12
	case "thirteen":
		return kindNumber, 13
	case "fourteen":
		return kindNumber, 14
	case "fifteen":
		return kindNumber, 15
	case "sixteen":
		return kindNumber, 16
	case "seventeen":
		return kindNumber, 17
	case "eighteen":
		return kindNumber, 18
	case "nineteen":
		return kindNumber, 19
	case "twenty":
		return kindNumber, 20
	case "thirty":
		return kindNumber, 30
	case "forty":
		return kindNumber, 40
	case "fifty":
		return kindNumber, 50
	case "sixty":
		return kindNumber, 60
	case "seventy":
		return kindNumber, 70
	case "eighty":
		return kindNumber, 80
	case "ninety":
		return kindNumber, 90
	case "hundred", "hundreds":
		return kindScale, 1e2
	case "thousand", "thousands":
		return kindScale, 1e3
	case "million", "millions":
		return kindScale, 1e6
	case "billion", "billions":
		return kindScale, 1e9
	case "trillion", "trillions":
		return kindScale, 1e12
	// ordinals
	case "first":
		return kindOrdinal, 1
	case "second":
		return kindOrdinal, 2
	case "third":
		return kindOrdinal, 3
	case "fourth":
		return kindOrdinal, 4
	case "fifth":
		return kindOrdinal, 5
	case "sixth":
		return kindOrdinal, 6
	case "seventh":
		return kindOrdinal, 7
	case "eighth":
		return kindOrdinal, 8
	case "ninth":
		return kindOrdinal, 9
	case "tenth":
		return kindOrdinal, 10
	case "eleventh":
		return kindOrdinal, 11
	case "twelfth":
		return kindOrdinal, 12
	case "thirteenth":
		return kindOrdinal, 13
	case "fourteenth":
		return kindOrdinal, 14
	case "fifteenth":
		return kindOrdinal, 15
	case "sixteenth":
		return kindOrdinal, 16
	case "seventeenth":
		return kindOrdinal, 17
	case "eighteenth":
		return kindOrdinal, 18
	case "nineteenth":
		return kindOrdinal, 19
	case "twentieth":
		return kindOrdinal, 20
	case "thirtieth":
		return kindOrdinal, 30
	case "fortieth":
		return kindOrdinal, 40
	case "fiftieth":
		return kindOrdinal, 50
	case "hundredth":
		return kindOrdinal, 100
	case "thousandth":
		return kindOrdinal, 1000
	case "millionth":
		return kindOrdinal, 1e6
	// negations ("n't" is recognised by the tokenizer)
	case "not", "no", "never", "without", "none", "nobody", "nothing", "neither", "nor",
		"nowhere", "cannot", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent",
		"cant", "couldnt", "wont", "wouldnt", "shouldnt", "hasnt", "havent", "hadnt", "aint",
		"mustnt", "neednt":
		return kindNegation, 0
	// comparatives and directions: each word its own bit, inflections share it
	case "before":
		return kindComparative, 0
	case "after":
		return kindComparative, 1
	case "more":
		return kindComparative, 2
	case "less", "fewer":
		return kindComparative, 3
	case "most":
		return kindComparative, 4
	case "least":
		return kindComparative, 5
	case "max", "maximum", "maximal", "maximize", "maximise":
		return kindComparative, 6
	case "min", "minimum", "minimal", "minimize", "minimise":
		return kindComparative, 7
	case "last", "latest":
		return kindComparative, 8
	case "increase", "increases", "increased", "increasing":
		return kindComparative, 9
	case "decrease", "decreases", "decreased", "decreasing":
		return kindComparative, 10
	case "higher", "highest":
		return kindComparative, 11
	case "lower", "lowest":
		return kindComparative, 12
	case "larger", "largest", "bigger", "biggest", "greater", "greatest":
		return kindComparative, 13
	case "smaller", "smallest":
		return kindComparative, 14
	case "better", "best":
		return kindComparative, 15
	case "worse", "worst":
		return kindComparative, 16
	case "above":
		return kindComparative, 17
	case "below":
		return kindComparative, 18
	case "earlier", "earliest":
		return kindComparative, 19
	case "later":
		return kindComparative, 20
	case "older", "oldest":
		return kindComparative, 21
	case "younger", "youngest":
		return kindComparative, 22
	case "ascending", "asc":
		return kindComparative, 23
	case "descending", "desc":
		return kindComparative, 24
	case "encode", "encoding", "encrypt", "encryption", "compress", "compression", "serialize", "serialise":
		return kindComparative, 25
	case "decode", "decoding", "decrypt", "decryption", "decompress", "decompression", "deserialize", "deserialise":
		return kindComparative, 26
	case "upload":
		return kindComparative, 27
	case "download":
		return kindComparative, 28
	case "import":
		return kindComparative, 29
	case "export":
		return kindComparative, 30
	case "buy", "buying":
		return kindComparative, 31
	case "sell", "selling":
		return kindComparative, 32
	case "enable", "enabled", "enabling":
		return kindComparative, 33
	case "disable", "disabled", "disabling":
		return kindComparative, 34
	case "true":
		return kindComparative, 35
	case "false":
		return kindComparative, 36
	case "longer", "longest":
		return kindComparative, 37
	case "shorter", "shortest":
		return kindComparative, 38
	case "faster", "fastest":
		return kindComparative, 39
	case "slower", "slowest":
		return kindComparative, 40
	case "cheaper", "cheapest":
		return kindComparative, 41
	// function words: not content, and not names when capitalised
	case "a", "an", "the", "this", "that", "these", "those", "what", "whats", "which", "who",
		"whom", "whose", "when", "where", "why", "how", "is", "are", "was", "were", "am", "be",
		"been", "being", "do", "does", "did", "can", "could", "would", "should", "will", "shall",
		"may", "might", "must", "have", "has", "had",
		"there", "here", "if", "in", "on", "at", "for", "from", "with",
		"about", "as", "by", "of", "to", "but", "so", "also", "then", "than",
		"please", "now", "yes",
		"ok", "okay", "hi", "hello", "hey", "thanks", "thank", "just", "only", "since", "while",
		"although", "though", "because", "during", "between", "into", "onto", "over", "under",
		"other", "another", "such", "same", "again", "still", "even", "well", "however",
		"therefore", "thus", "instead", "very", "really", "actually", "basically", "s", "t",
		"re", "ll", "ve", "d", "m":
		return kindFunction, 0
	// marked function words: who is meant and how many decide the answer
	// ("he" / "she", "all" / "some", "and" / "or"); each class its own bit
	// (val-1), and the set present must be equal
	case "i", "im", "ive", "id", "me", "my", "mine", "myself":
		return kindFunction, 1
	case "you", "your", "yours", "yourself", "youre":
		return kindFunction, 2
	case "we", "our", "us", "ours", "ourselves":
		return kindFunction, 3
	case "they", "them", "their", "theirs", "themselves":
		return kindFunction, 4
	case "he", "him", "his", "himself":
		return kindFunction, 5
	case "she", "her", "hers", "herself":
		return kindFunction, 6
	case "it", "its", "itself":
		return kindFunction, 7
	case "all", "every", "each":
		return kindFunction, 8
	case "some", "any":
		return kindFunction, 9
	case "both":
		return kindFunction, 10
	case "many", "much":
		return kindFunction, 11
	case "and":
		return kindFunction, 12
	case "or":
		return kindFunction, 13
	// common sentence openers that are content words: capitalised at a
	// sentence start, not a name
	case "give", "tell", "write", "explain", "describe", "list", "show", "find", "make",
		"create", "generate", "summarize", "summarise", "translate", "compare", "calculate",
		"convert", "define", "help", "let", "lets", "new", "like", "suggest", "recommend",
		"provide", "use", "using", "get", "go", "see", "say", "think", "know", "want", "need",
		"try", "check", "fix", "add", "remove", "set", "run", "build", "implement", "design",
		"plan", "draft", "rewrite", "edit", "improve", "name", "identify", "analyze", "analyse",
		"discuss", "outline", "sort", "count", "return", "print", "read", "answer", "continue",
		"according", "currently", "today", "usually", "generally", "typically", "often",
		"sometimes", "always":
		return kindOpener, 0
	}
	return kindOther, 0
}

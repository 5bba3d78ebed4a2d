package guard

import "testing"

func TestCheck(t *testing.T) {
	tests := []struct {
		name       string
		query, hit string
		ok         bool
		reason     string
	}{
		{"paraphrase passes", "How do I reset my password?", "How can I reset my password?", true, ""},
		{"identical text passes", "Explain the Raft consensus algorithm.", "Explain the Raft consensus algorithm.", true, ""},
		{"case of a name does not matter", "what is the capital of France?", "What is the capital of france", true, ""},
		{"name at a sentence start matches the same name inside", "Paris is in which country?", "Which country is Paris in?", true, ""},
		{"negation is a miss", "Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?", false, ReasonNegation},
		{"n't is a negation", "Why does my code compile?", "Why doesn't my code compile?", false, ReasonNegation},
		{"without is a negation", "Make pancakes with eggs", "Make pancakes without eggs", false, ReasonNegation},
		{"changed number is a miss", "Write a poem of 4 lines", "Write a poem of 5 lines", false, ReasonNumber},
		{"added number is a miss", "List the largest cities", "List the 10 largest cities", false, ReasonNumber},
		{"number word equals digits", "Give me three ideas for a party", "Give me 3 ideas for a party", true, ""},
		{"number words compose", "twenty one thousand people", "21,000 people", true, ""},
		{"scale word after digits", "a budget of 5 million dollars", "a budget of 5,000,000 dollars", true, ""},
		{"ordinal word equals digits", "who was the eleventh president", "who was the 11th president", true, ""},
		{"ordinal is not a cardinal", "the 3rd item", "the 3 item", false, ReasonNumber},
		{"decimal differs", "Python 3.11 features", "Python 3.12 features", false, ReasonNumber},
		{"swapped numbers are a miss", "from 5 to 10", "from 10 to 5", false, ReasonNumber},
		{"negative number", "what is -5 squared", "what is 5 squared", false, ReasonNumber},
		{"different person is a miss", "Who is Barack Obama?", "Who is Donald Trump?", false, ReasonEntity},
		{"follow-up in another conversation is a miss", "Who is Barack Obama?\nHow old is he?", "Who is Donald Trump?\nHow old is he?", false, ReasonEntity},
		{"swapped entities are a miss", "Convert USD to EUR", "Convert EUR to USD", false, ReasonEntity},
		{"acronym differs", "What does HTTP stand for", "What does FTP stand for", false, ReasonEntity},
		{"model name with digits", "Compare gpt4o and llama", "Compare gpt4 and llama", false, ReasonEntity},
		{"quoted string differs", `Translate "good morning" to Spanish`, `Translate "good night" to Spanish`, false, ReasonEntity},
		{"backtick code differs", "What does `ls -la` do?", "What does `ls -l` do?", false, ReasonEntity},
		{"email differs", "Send it to bob@example.com", "Send it to alice@example.com", false, ReasonEntity},
		{"url differs", "Summarise https://example.com/a", "Summarise https://example.com/b", false, ReasonEntity},
		{"comparative flip is a miss", "Sort the list in ascending order", "Sort the list in descending order", false, ReasonComparative},
		{"before and after", "What happened before the war?", "What happened after the war?", false, ReasonComparative},
		{"max and min", "Find the max of the array", "Find the min of the array", false, ReasonComparative},
		{"adjacent words may swap", "What is the capital of France?", "What is France's capital?", true, ""},
		{"swapped words are a miss", "Omitting the engines would increase complexity and reduce payload", "Omitting the engines would reduce complexity and increase payload", false, ReasonOrder},
		{"swapped roles are a miss", "the dog chased the cat across the garden", "the cat chased the dog across the garden", false, ReasonOrder},
		{"added qualifier is a miss", "Can I share my dataset with my team?", "Can I share my audio dataset with my team?", false, ReasonQualifier},
		{"synonym substitution passes", "How do I delete a file in Linux?", "How do I remove a file in Linux?", true, ""},
		{"empty texts pass", "", "", true, ""},
		// Symbols and operators decide code, maths and money.
		{"operator differs is a miss", "print(7 + 3)", "print(7 - 3)", false, ReasonSymbol},
		{"comparison operator differs is a miss", "why is a == b true here", "why is a != b true here", false, ReasonSymbol},
		{"increment and decrement differ", "what does i++ do in C", "what does i-- do in C", false, ReasonSymbol},
		{"language name by symbol differs", "Is C++ hard to learn?", "Is C# hard to learn?", false, ReasonSymbol},
		{"currency symbol differs is a miss", "Convert $100 to yen", "Convert €100 to yen", false, ReasonSymbol},
		{"percent sign is a miss", "increase the price by 20%", "increase the price by 20", false, ReasonSymbol},
		{"product and power differ", "what is 2*10", "what is 2^10", false, ReasonSymbol},
		{"sentence punctuation is not a symbol", "How do I sort a list in Python?", "How do I sort a list in Python.", true, ""},
		{"hyphenated word is not a symbol", "a well-known sorting algorithm", "a well known sorting algorithm", true, ""},
		// A content word that differs must be a form or a synonym.
		{"fruit swapped is a miss", "Write a short poem about a mango growing on a tree", "Write a short poem about a banana growing on a tree", false, ReasonWord},
		{"antonym verb add/remove is a miss", "How do I add a user to a group in Linux?", "How do I remove a user from a group in Linux?", false, ReasonWord},
		{"allow and deny are a miss", "allow traffic on port 22 in the firewall", "deny traffic on port 22 in the firewall", false, ReasonWord},
		{"open and close are a miss", "how to open a file descriptor in C", "how to close a file descriptor in C", false, ReasonWord},
		{"synonym from WordNet passes", "can we allow guests to use the wifi", "can we permit guests to use the wifi", true, ""},
		{"plural is a form of the word", "How do I reverse a list in Python?", "How do I reverse lists in Python?", true, ""},
		{"verb form passes", "reversing a string in Go", "reverse a string in Go", true, ""},
		{"pronoun differs is a miss", "What did he say in the meeting yesterday?", "What did she say in the meeting yesterday?", false, ReasonWord},
		{"quantifier differs is a miss", "delete all files in the folder", "delete some files in the folder", false, ReasonWord},
		{"and or is a miss", "tea and coffee for breakfast", "tea or coffee for breakfast", false, ReasonWord},
		// Turn boundaries: who said what.
		{"moved turn boundary is a miss", "tell me a joke\nabout cats" + TurnSeparator + "why did the cat sit", "tell me a joke" + TurnSeparator + "about cats\nwhy did the cat sit", false, ReasonQualifier},
		{"extra turn is a miss", "hello there" + TurnSeparator + "hi", "hello there", false, ReasonTurns},
		{"word swapped in a later turn is a miss", "Plan a trip" + TurnSeparator + "Sure, where to?" + TurnSeparator + "Add a museum", "Plan a trip" + TurnSeparator + "Sure, where to?" + TurnSeparator + "Remove a museum", false, ReasonWord},
		{"same dialog passes", "Plan a trip" + TurnSeparator + "Where to?", "plan a trip" + TurnSeparator + "Where to", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, reason := Check(tt.query, tt.hit)
			if ok != tt.ok || reason != tt.reason {
				t.Errorf("Check(%q, %q) = %v %q, want %v %q", tt.query, tt.hit, ok, reason, tt.ok, tt.reason)
			}
			ok2, reason2 := Check(tt.hit, tt.query)
			if ok2 != ok || reason2 != reason {
				t.Errorf("Check is not symmetric: reversed gives %v %q", ok2, reason2)
			}
		})
	}
}

const benchQuery = "I am planning a trip to Japan in April with my family of four. We would like to visit Tokyo, Kyoto and Osaka, and we are interested in temples, food markets and day trips that are not too tiring for small children. Could you suggest a seven day itinerary with train connections, rough costs in yen, and tips for travelling with a stroller? We do not speak Japanese."

func BenchmarkCheck(b *testing.B) {
	cand := benchQuery[:len(benchQuery)-1] + ", sadly."
	b.ReportAllocs()
	for b.Loop() {
		Check(benchQuery, cand)
	}
}

func TestCheckAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { Check(benchQuery, benchQuery) }); n != 0 {
		t.Errorf("Check allocates %v times for a 70-word prompt, want 0", n)
	}
}

func TestLongNumbersCompareExactly(t *testing.T) {
	for _, tc := range [][2]string{
		{"status of order 12345678901234567", "status of order 12345678901234568"},
		{"is 0.30000000000000001 equal to it", "is 0.3 equal to it"},
	} {
		if ok, _ := Check(tc[0], tc[1]); ok {
			t.Errorf("%q and %q passed the guard", tc[0], tc[1])
		}
	}
	if ok, why := Check("order 12345678901234567 status", "order 12345678901234567 status"); !ok {
		t.Errorf("the same long number was refused: %s", why)
	}
}

func TestJudgeable(t *testing.T) {
	tests := []struct {
		name       string
		query, hit string
		judgeable  bool
		classes    Class // must be among the differences found
	}{
		// Hard: no judge may override them.
		{"operator differs is never the judge's", "print(7 + 3)", "print(7 - 3)", false, ClassSymbol},
		{"currency differs is never the judge's", "Convert $100 to yen", "Convert €100 to yen", false, ClassSymbol},
		{"percent sign is never the judge's", "increase the price by 20%", "increase the price by 20", false, ClassSymbol},
		{"number differs is never the judge's", "Write a poem of 4 lines", "Write a poem of 5 lines", false, ClassNumber},
		{"negation is never the judge's", "Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?", false, ClassNegation},
		{"entity differs is never the judge's", "Who is Barack Obama?", "Who is Donald Trump?", false, ClassEntity},
		{"entity added is never the judge's", "What is the capital?", "What is the capital of France?", false, ClassEntity},
		{"pronoun exchanged is never the judge's", "What did he say in the meeting yesterday?", "What did she say in the meeting yesterday?", false, ClassMarkedSwap},
		{"quantifier exchanged is never the judge's", "delete all files in the folder", "delete some files in the folder", false, ClassMarkedSwap},
		{"and or is never the judge's", "tea and coffee for breakfast", "tea or coffee for breakfast", false, ClassMarkedSwap},
		{"direction word exchanged is never the judge's", "What happened before the war?", "What happened after the war?", false, ClassComparativeSwap},
		{"extra turn is never the judge's", "hello there" + TurnSeparator + "hi", "hello there", false, ClassTurns},
		{"moved turn boundary is never the judge's", "tell me a joke\nabout cats" + TurnSeparator + "why did the cat sit", "tell me a joke" + TurnSeparator + "about cats\nwhy did the cat sit", false, ClassTurns},
		{"a hard difference among soft ones is never the judge's", "How do I add 2 users to a group?", "How do I remove 3 users from a group?", false, ClassNumber | ClassWord},
		// Soft: wording a judge may settle.
		{"content word without a WordNet link is the judge's", "Write a short poem about a mango growing on a tree", "Write a short poem about a banana growing on a tree", true, ClassWord},
		{"antonym verb is the judge's", "How do I add a user to a group in Linux?", "How do I remove a user from a group in Linux?", true, ClassWord},
		{"swapped words are the judge's", "the dog chased the cat across the garden", "the cat chased the dog across the garden", true, ClassOrder},
		{"added qualifier is the judge's", "Can I share my dataset with my team?", "Can I share my audio dataset with my team?", true, ClassQualifier},
		{"pronoun on one side only is the judge's", "How do I reset my password?", "How to reset the password?", true, ClassMarked},
		{"comparative on one side only is the judge's", "List the cities of the region", "List the largest cities of the region", true, ClassComparative},
		{"one turn of a dialog differing is the judge's", "Plan a trip" + TurnSeparator + "Sure, where to?" + TurnSeparator + "Add a museum", "Plan a trip" + TurnSeparator + "Sure, where to?" + TurnSeparator + "Remove a museum", true, ClassWord},
		{"accepted pair is judgeable", "How do I reset my password?", "How can I reset my password?", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range [][2]string{{tt.query, tt.hit}, {tt.hit, tt.query}} {
				d := Differences(p[0], p[1])
				if got := Judgeable(p[0], p[1]); got != tt.judgeable {
					t.Errorf("Judgeable(%q, %q) = %v, want %v (differences %b)", p[0], p[1], got, tt.judgeable, d)
				}
				if d&tt.classes != tt.classes {
					t.Errorf("Differences(%q, %q) = %b, want it to hold %b", p[0], p[1], d, tt.classes)
				}
				if ok, _ := Check(p[0], p[1]); ok != (d == 0) {
					t.Errorf("Check says %v but Differences found %b", ok, d)
				}
			}
		})
	}
}

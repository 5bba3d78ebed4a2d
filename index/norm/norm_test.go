package norm

import "testing"

func TestText(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"case and final punctuation are the same", "How do I reverse a list in Python?", "how do i reverse a list in python", true},
		{"how can I reads how do I", "How can I reverse a list in Python?", "How do I reverse a list in Python?", true},
		{"please is dropped", "Please summarise this paragraph", "summarise this paragraph.", true},
		{"what's reads what is", "What's the capital of France?", "What is the capital of France", true},
		{"tell me the reads what is the", "Tell me the capital of France.", "What is the capital of France?", true},
		{"inner spaces collapse", "explain  the   borrow checker", "explain the borrow checker", true},
		{"typographic apostrophe", "what’s a monad", "what's a monad", true},
		{"operator differs is a miss", "print(7 + 3)", "print(7 - 3)", false},
		{"comparison differs is a miss", "is a == b", "is a != b", false},
		{"increment differs is a miss", "what does i++ do", "what does i-- do", false},
		{"acronym keeps its case", "Is the US safe?", "Is the us safe?", false},
		{"decimal point is kept", "version 3.5 notes", "version 35 notes", false},
		{"indentation is kept", "if x:\n    y()", "if x:\ny()", false},
		{"turn boundary is kept", "a\nb\x1ec", "a\x1eb\nc", false},
		{"tell me a joke is not what is a joke", "Tell me a joke", "What is a joke", false},
		{"number differs is a miss", "list 5 cities", "list 6 cities", false},
		{"percent is kept", "raise by 20%", "raise by 20", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			na, nb := Text(tt.a), Text(tt.b)
			if (na == nb) != tt.same {
				t.Errorf("Text(%q) = %q, Text(%q) = %q; same = %v, want %v", tt.a, na, tt.b, nb, na == nb, tt.same)
			}
		})
	}
}

// FuzzText: Text never panics, is idempotent and keeps turns apart.
func FuzzText(f *testing.F) {
	for _, s := range []string{"How can I do it?", "a\x1eb", "  x  y \n z", "i++.", "What's up, please!"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := Text(s)
		if again := Text(n); again != n {
			t.Errorf("Text is not idempotent: %q -> %q -> %q", s, n, again)
		}
	})
}

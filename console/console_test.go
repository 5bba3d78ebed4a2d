package console

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestMount(t *testing.T) {
	admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, "admin "+r.URL.Path)
	})
	srv := httptest.NewServer(Mount(admin))
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		name, method, path string
		status             int
		contains, ctype    string
	}{
		{"the page needs no token", "GET", "/ui/", 200, `<script src="app.js"`, "text/html"},
		{"the script", "GET", "/ui/app.js", 200, "sessionStorage", "javascript"},
		{"the style sheet", "GET", "/ui/style.css", 200, "@media", "text/css"},
		{"ui without its slash redirects", "GET", "/ui", 301, "", ""},
		{"an unknown file is a 404", "GET", "/ui/nope.js", 404, "", ""},
		{"the console cannot be posted to", "POST", "/ui/", 405, "", ""},
		{"admin routes still need the token", "GET", "/admin/cluster", 401, "", ""},
		{"a path merely starting with ui is the admin API's", "GET", "/uix", 401, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if !strings.Contains(string(body), tc.contains) {
				t.Fatalf("body lacks %q", tc.contains)
			}
			if !strings.Contains(resp.Header.Get("Content-Type"), tc.ctype) {
				t.Fatalf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), tc.ctype)
			}
			if tc.status == 200 {
				if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "connect-src 'self'") {
					t.Fatalf("Content-Security-Policy %q", csp)
				}
				if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
					t.Fatal("no nosniff")
				}
			}
		})
	}
}

// TestNothingExternal: the console loads nothing from another origin (no
// CDN, font or script), so it works without a network and leaks nothing.
func TestNothingExternal(t *testing.T) {
	external := regexp.MustCompile(`(?i)(src|href|url)\s*[=(]\s*["']?\s*(https?:)?//|@import|fetch\(\s*["']https?:`)
	err := fs.WalkDir(embedded, "ui", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := embedded.ReadFile(path)
		if err != nil {
			return err
		}
		if m := external.Find(b); m != nil {
			t.Errorf("%s refers to another origin: %q", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

package console

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed ui
var embedded embed.FS

// Prefix is where the console lives on the admin listener.
const Prefix = "/ui/"

// contentPolicy lets the page load only its own files and talk only to its
// own origin, and never be framed.
const contentPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

// Handler serves the console's files under Prefix. The files are public
// (they hold no data), so they need no admin token; everything they show
// comes from the admin API, which does.
func Handler() http.Handler {
	sub, err := fs.Sub(embedded, "ui")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix(Prefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", contentPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// Mount serves the console under Prefix (and redirects /ui to it) and
// everything else with admin.
func Mount(admin http.Handler) http.Handler {
	ui := Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/ui":
			http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
		case strings.HasPrefix(r.URL.Path, Prefix):
			ui.ServeHTTP(w, r)
		default:
			admin.ServeHTTP(w, r)
		}
	})
}

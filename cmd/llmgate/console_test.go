package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// submit clicks the submit button of a form, as a user would (a form's
// submit() would skip the page's handlers).
func submit(form string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(form + ` button[type="submit"]`))
}

// chromiumPath finds a Chromium to drive: under CI=true a missing one is a
// failure, elsewhere a skip with the reason.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium on PATH: .ci/run installs Debian's chromium for the console's browser test")
	}
	t.Skip("no chromium on PATH (apt-get install chromium): the console's browser test needs a real browser")
	return ""
}

// page is one headless Chromium tab with every console error and uncaught
// exception of its pages recorded.
type page struct {
	t    *testing.T
	ctx  context.Context
	shot string // directory of the screenshots

	mu     sync.Mutex
	errors []string
}

func newPage(t *testing.T, within time.Duration) *page {
	t.Helper()
	exe := chromiumPath(t)
	profile := t.TempDir()
	shots := os.Getenv("LLMGATE_CONSOLE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(profile), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true))
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithErrorf(t.Logf))
	// The browser's whole life is bounded: a hung page fails the test
	// instead of holding it until the global test timeout.
	timer := time.AfterFunc(within, cancel)
	t.Cleanup(func() {
		timer.Stop()
		cancel()
		cancelAlloc()
	})
	p := &page{t: t, ctx: ctx, shot: shots}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				p.mu.Lock()
				p.errors = append(p.errors, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
				p.mu.Unlock()
			}
		}
	}()
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: shots}); err != nil {
		t.Fatalf("setting the download directory: %v", err)
	}
	return p
}

// do runs steps, failing the test with what was being done.
func (p *page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v%s", what, err, p.errorList())
	}
}

// until waits up to d for the JavaScript expression to be truthy.
func (p *page) until(what, expr string, d time.Duration) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Poll[any](expr, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		html, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.getElementById("main").innerText + "\n[status] " + document.getElementById("status").innerText`))
		p.t.Fatalf("%s: %v\npage:\n%s%s", what, err, html, p.errorList())
	}
}

func (p *page) eval(expr string) string {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		p.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

func (p *page) errorList() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errors) == 0 {
		return ""
	}
	return "\nconsole errors:\n  " + strings.Join(p.errors, "\n  ")
}

// noErrors fails the test if any page logged an error or threw.
func (p *page) noErrors() {
	p.t.Helper()
	if l := p.errorList(); l != "" {
		p.t.Fatal(l)
	}
}

// screenshot saves the viewport as name.png and fails if it is blank: one
// colour, or nearly so.
func (p *page) screenshot(name string) {
	p.t.Helper()
	buf, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(p.shot, name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		p.t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(buf))
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	if v := lumaVariance(img); v < 100 {
		p.t.Fatalf("screenshot %s looks blank (luma variance %.1f): %s", name, v, path)
	}
	p.t.Logf("screenshot %s", path)
}

// lumaVariance is the variance of the pixels' luma (0–255 scale), sampled.
func lumaVariance(img image.Image) float64 {
	b := img.Bounds()
	var n, sum, sq float64
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			l := (0.299*float64(r) + 0.587*float64(g) + 0.114*float64(bl)) / 257
			n++
			sum += l
			sq += l * l
		}
	}
	mean := sum / n
	return sq/n - mean*mean
}

func TestLumaVarianceTellsBlankFromDrawn(t *testing.T) {
	blank := image.NewGray(image.Rect(0, 0, 100, 100))
	for i := range blank.Pix {
		blank.Pix[i] = 255
	}
	if v := lumaVariance(blank); v > 1e-6 {
		t.Fatalf("a white image has variance %v", v)
	}
	drawn := image.NewGray(image.Rect(0, 0, 100, 100))
	for i := range drawn.Pix {
		drawn.Pix[i] = byte(255 * (i % 100 / 10 % 2)) // bands 10 px wide
	}
	if v := lumaVariance(drawn); v < 100 {
		t.Fatalf("a striped image has variance %v", v)
	}
}

// newConsoleNode is a cluster node with the cache on and a price on the
// route, so its usage has a cost.
func newConsoleNode(t *testing.T, name, mockURL string, seeds ...string) *clusterNode {
	t.Helper()
	dir := t.TempDir()
	n := &clusterNode{name: name, dir: dir, listen: freeAddr(t), admin: freeAddr(t), gossip: freeAddr(t)}
	n.config = nodeConfig{name: name, mockURL: mockURL, listen: n.listen, admin: n.admin, gossip: n.gossip, join: seeds,
		consumer: ", tpm: 100000", route: ", price: {input_per_1m: 2.50, output_per_1m: 10.00}",
		extra: "cache: {enabled: true, store_wait: 1s, verify: {route: gpt-4o}}\n"}.write(t, dir)
	return n
}

// TestConsoleInBrowser drives the console in a real headless Chromium
// against two real nodes: sign in, both members, a consumer's usage, a
// cached prompt found and deleted, a key created and revoked.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes and a browser")
	}
	chromiumPath(t)
	mockURL := startMock(t)
	a := newConsoleNode(t, "gw-a", mockURL)
	a.start(t)
	b := newConsoleNode(t, "gw-b", mockURL, a.gossip)
	b.start(t)
	waitFor(t, 30*time.Second, "joined", bothAlive(t, a, b))

	const prompt = "What is the tallest mountain in the Alps?"
	for i, n := range []*clusterNode{a, b, a} {
		if code, _, body := n.chat(t, prompt, 20); code != 200 {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
	if code, _, body := b.chat(t, "Name three rivers of France.", 20); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var listed struct {
		Entries []struct{ ID, Prompt, Route, Partition string }
	}
	waitFor(t, 20*time.Second, "the prompt cached on gw-b", func() bool {
		listed.Entries = nil
		b.adminDo(t, "GET", "/admin/cache/entries", "", &listed)
		for _, e := range listed.Entries {
			if strings.Contains(e.Prompt, "tallest mountain") {
				return true
			}
		}
		return false
	})
	var entry struct{ ID, Prompt, Route, Partition string }
	for _, e := range listed.Entries {
		if strings.Contains(e.Prompt, "tallest mountain") {
			entry = e
		}
	}

	p := newPage(t, 2*time.Minute)
	ui := "http://" + a.admin + "/ui/"

	// Sign in.
	p.do("opening the console", chromedp.Navigate(ui), chromedp.WaitVisible(chromedp.CSS("#token")))
	p.screenshot("0-signin")
	p.do("signing in", chromedp.SendKeys(chromedp.CSS("#token"), "admin-t"), submit("#signin-form"))
	p.until("both members alive on the overview",
		`document.querySelectorAll('#members tr[data-member="gw-a"] .state-alive, #members tr[data-member="gw-b"] .state-alive').length === 2`, 10*time.Second)
	if tok := p.eval(`sessionStorage.getItem("llmgate-admin-token")`); tok != "admin-t" {
		t.Fatalf("the token is not in session storage: %q", tok)
	}
	p.until("cache stats and backends on the overview",
		`document.querySelector('[data-stat="hit_rate"] dd') && document.querySelector('[data-stat="hit_rate"] dd').textContent !== "—" && document.querySelector('#backends .state-up') !== null`, 10*time.Second)
	p.until("both members' config hashes", `[...document.querySelectorAll('#members tr[data-member] code')].filter(c => c.textContent.length >= 8).length === 2`, 10*time.Second)
	p.until("the judge's figures (cache.verify)", `document.querySelector('[data-stat="verify_verdicts"]') !== null`, 10*time.Second)
	// The prompt asked three times on a priced route: two hits, so money saved.
	p.until("money saved by the cache", `(() => { const d = document.querySelector('[data-stat="saved_usd"] dd'); return d && /[1-9]/.test(d.textContent) })()`, 10*time.Second)
	p.screenshot("1-overview")

	// The consumer's tokens this minute, cluster-wide.
	p.do("consumers", chromedp.Click(chromedp.CSS(`nav a[data-view="consumers"]`)))
	p.until("team-a's tokens per minute", `(() => { const c = document.querySelector('#quota tr[data-consumer="team-a"] td[data-tpm-used]'); return c && Number(c.dataset.tpmUsed) > 0 })()`, 10*time.Second)
	p.screenshot("2-consumers")

	// Usage history, chart and table.
	p.do("usage", chromedp.Click(chromedp.CSS(`nav a[data-view="usage"]`)))
	p.until("team-a's usage rows", `document.querySelector('#usage-table tr[data-consumer="team-a"][data-route="gpt-4o"]') !== null && document.querySelector('#usage-chart svg rect') !== null && document.querySelector('#usage-table tfoot td:last-child').textContent !== "$0.0000"`, 15*time.Second)
	p.screenshot("3-usage")
	_ = os.Remove(filepath.Join(p.shot, "llmgate-usage.csv")) // from an earlier run into the same directory
	p.do("exporting CSV", chromedp.Click(chromedp.CSS("#usage-csv")))
	p.until("the export reported", `document.getElementById("status").textContent.startsWith("Exported")`, 10*time.Second)
	waitFor(t, 20*time.Second, "the CSV downloaded", func() bool {
		b, err := os.ReadFile(filepath.Join(p.shot, "llmgate-usage.csv"))
		return err == nil && bytes.Contains(b, []byte("team-a"))
	})

	// Find the cached prompt by a search, inspect it, delete it.
	p.do("cache browser", chromedp.Click(chromedp.CSS(`nav a[data-view="cache"]`)),
		chromedp.WaitVisible(chromedp.CSS("#search-form")),
		chromedp.SendKeys(chromedp.CSS("#search-route"), entry.Route),
		chromedp.SendKeys(chromedp.CSS("#search-partition"), entry.Partition),
		chromedp.SendKeys(chromedp.CSS("#search-text"), "what is the tallest mountain in the alps"),
		submit("#search-form"))
	row := fmt.Sprintf(`#entries tr[data-entry=%q]`, entry.ID)
	p.until("the search finds the entry", `document.querySelector('`+row+`') !== null && document.getElementById("entries").dataset.mode === "search"`, 10*time.Second)
	p.do("inspecting the entry", chromedp.Click(chromedp.CSS(row+" button")))
	p.until("the entry's answer", `!document.getElementById("entry").hidden && document.getElementById("entry-answer").textContent.length > 0 && document.getElementById("entry-id").textContent === `+fmt.Sprintf("%q", entry.ID), 10*time.Second)
	p.screenshot("4-cache-entry")
	p.do("deleting the entry", chromedp.Click(chromedp.CSS("#entry-delete")))
	if armed := p.eval(`document.getElementById("entry-delete").textContent`); !strings.Contains(armed, "confirm") {
		t.Fatalf("delete acted on one click: %q", armed)
	}
	p.do("confirming the delete", chromedp.Click(chromedp.CSS("#entry-delete")))
	p.until("the delete reported", `document.getElementById("status").textContent.startsWith("Deleted entry")`, 10*time.Second)
	waitFor(t, 20*time.Second, "the entry gone from gw-b", func() bool {
		return b.adminDo(t, "GET", "/admin/cache/entries/"+entry.ID, "", nil) == 404
	})

	// Purge the partition after typing its name.
	p.do("filling the purge form", chromedp.SendKeys(chromedp.CSS("#purge-partition"), entry.Partition),
		chromedp.SendKeys(chromedp.CSS("#purge-confirm"), entry.Partition[:len(entry.Partition)-1]))
	if p.eval(`String(document.getElementById("purge-go").disabled)`) != "true" {
		t.Fatal("purge is enabled before the partition's name is typed in full")
	}
	p.do("confirming the purge", chromedp.SendKeys(chromedp.CSS("#purge-confirm"), entry.Partition[len(entry.Partition)-1:]),
		chromedp.Click(chromedp.CSS("#purge-go")))
	p.until("the purge reported", `document.getElementById("status").textContent.startsWith("Purged")`, 10*time.Second)
	waitFor(t, 20*time.Second, "the partition empty on gw-b", func() bool {
		var out struct{ Entries []struct{ ID string } }
		b.adminDo(t, "GET", "/admin/cache/entries?partition="+entry.Partition, "", &out)
		return len(out.Entries) == 0
	})

	// Create a key (shown once), use it on the other node, revoke it.
	p.do("keys", chromedp.Click(chromedp.CSS(`nav a[data-view="keys"]`)),
		chromedp.WaitVisible(chromedp.CSS("#keys-consumer")),
		chromedp.SendKeys(chromedp.CSS("#keys-consumer"), "team-a"), submit("#keys-form"),
		chromedp.SendKeys(chromedp.CSS("#newkey-desc"), "browser test"), submit("#newkey-form"))
	p.until("the new key shown", `document.getElementById("newkey-value").textContent.length > 20 && document.querySelector("#keys-table tr[data-key]") !== null`, 10*time.Second)
	key := p.eval(`document.getElementById("newkey-value").textContent`)
	p.screenshot("5-keys")
	b.within(t, 2*time.Second, key, 200, "the key created in the console works on gw-b")
	p.do("dismissing the key", chromedp.Click(chromedp.CSS("#newkey-done")))
	if p.eval(`document.getElementById("newkey-value").textContent`) != "" {
		t.Fatal("the key stays on the page after Done")
	}
	p.do("revoking", chromedp.Click(chromedp.CSS("#keys-table button[data-revoke]")),
		chromedp.Click(chromedp.CSS("#keys-table button[data-revoke]")))
	p.until("the revocation reported", `document.getElementById("status").textContent.startsWith("Revoked")`, 10*time.Second)
	b.within(t, 2*time.Second, key, 401, "the key revoked in the console is refused on gw-b")

	// A narrow screen: nothing wider than the viewport, the navigation in reach.
	p.do("narrow viewport", chromedp.EmulateViewport(375, 740), chromedp.Click(chromedp.CSS(`nav a[data-view="overview"]`)))
	p.until("the overview on a narrow screen", `document.querySelectorAll('#members tr[data-member]').length === 2`, 10*time.Second)
	if w := p.eval(`String(document.documentElement.scrollWidth)`); w != "375" {
		t.Fatalf("the page is %spx wide on a 375px screen", w)
	}
	p.screenshot("6-narrow")

	// Keyboard: Tab from the top reaches the skip link, then the views.
	// A reload starts the focus order from the top; the token keeps the tab signed in.
	p.do("keyboard", chromedp.Reload())
	p.until("the overview after a reload", `document.querySelectorAll('#members tr[data-member]').length === 2`, 10*time.Second)
	p.do("the first Tab", chromedp.KeyEvent("\t"))
	if got := p.eval(`document.activeElement.className`); got != "skip" {
		t.Fatalf("the first Tab stop is %q, want the skip link", got)
	}
	p.do("tabbing to the views", chromedp.KeyEvent("\t"), chromedp.KeyEvent("\t"), chromedp.KeyEvent("\r"))
	p.until("Enter on a focused view link opens it", `location.hash === "#consumers" && !document.getElementById("consumers").hidden`, 5*time.Second)

	// Signing out forgets the token.
	p.do("signing out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#token")))
	if tok := p.eval(`String(sessionStorage.getItem("llmgate-admin-token"))`); tok != "null" {
		t.Fatalf("the token survives sign-out: %q", tok)
	}
	p.noErrors()
}

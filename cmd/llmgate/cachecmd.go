package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/embed"
	"github.com/llmgate/llmgate/internal/embed/quality"
	"github.com/llmgate/llmgate/node"
)

// runCache runs `llmgate cache SUBCOMMAND`.
func runCache(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "calibrate" {
		return errors.New("cache: want a subcommand: calibrate")
	}
	return runCalibrate(ctx, args[1:], stdout, stderr)
}

// runCalibrate runs `llmgate cache calibrate`: it embeds labelled pairs,
// splits them in two halves by cluster (pairs that share a text or a bag
// of words stay together), chooses on the first half the loosest threshold
// whose precision (guard on) reaches the target, and reports what that
// threshold gives on the second half, which took no part in the choice.
func runCalibrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("llmgate cache calibrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "`FILE` whose cache.embedder (local, or an embeddings route called through its backends) is calibrated and, with --write, whose cache.score_threshold is set")
	pairsPath := fs.String("pairs", "", "labelled pairs: TSV (text_a \\t text_b \\t 0|1, PAWS's id-first layout too) or JSONL ({\"a\",\"b\",\"same\"}); default the built-in PAWS + GPTCache sets in --data")
	data := fs.String("data", "../shared/data", "`DIR` with paws_dev.tsv and gptcache_mock_data.json, for the built-in set")
	target := fs.Float64("target-precision", 0.99, "precision the threshold must reach on the tuning half")
	write := fs.Bool("write", false, "write the chosen threshold to the config's cache.score_threshold")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cache calibrate: unexpected argument %q", fs.Arg(0))
	}
	if *target <= 0 || *target > 1 {
		return fmt.Errorf("cache calibrate: --target-precision %v is outside (0, 1]", *target)
	}
	if *write && *cfgPath == "" {
		return errors.New("cache calibrate: --write needs --config")
	}
	var cfg *config.Config
	if *cfgPath != "" {
		var err error
		if cfg, err = config.Load(*cfgPath); err != nil {
			return fmt.Errorf("cache calibrate: %w", err)
		}
		cfg.ApplyDefaults() // cache.embed_timeout bounds each embedding call
	}
	var pairs []quality.Pair
	var err error
	source := *pairsPath
	if source == "" {
		source = *data
		pairs, err = quality.LoadDir(*data, "paws_dev.tsv", "gptcache_mock_data.json")
		if errors.Is(err, os.ErrNotExist) {
			source = filepath.Join("index", "testdata")
			pairs, err = quality.LoadDir(source, "paws_dev_300.tsv", "gptcache_300.json")
		}
	} else {
		pairs, err = loadPairs(*pairsPath)
	}
	if err != nil {
		return fmt.Errorf("cache calibrate: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	embedder, embedFn := "local embedder", embed.NewLocal().Embed
	if cfg != nil && cfg.Cache.Embedder != "" && cfg.Cache.Embedder != "local" {
		embedder = "embeddings route " + cfg.Cache.Embedder
		vecs, err := embedThroughRoute(ctx, cfg, pairs, stderr)
		if err != nil {
			return fmt.Errorf("cache calibrate: %w", err)
		}
		embedFn = func(s string) []float32 { return vecs[s] }
	}
	tune, held := quality.Split(pairs)
	tuneOut, heldOut := quality.Run(tune, embedFn), quality.Run(held, embedFn)
	fmt.Fprintf(stdout, "cache calibrate: %d labelled pairs from %s, %s, guard on; tuning half %d pairs, held-out half %d pairs\n\n", len(pairs), source, embedder, len(tune), len(held))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "threshold\ttune prec\ttune hit\ttune right\ttune wrong\theld prec\theld hit\theld right\theld wrong\t")
	chosen := 0.0
	for i := 1; i <= 15; i++ {
		th := float64(i) * 0.02
		a, b := quality.Evaluate(tuneOut, "", th, true), quality.Evaluate(heldOut, "", th, true)
		fmt.Fprintf(tw, "%.2f\t%.3f\t%.3f\t%d\t%d\t%.3f\t%.3f\t%d\t%d\t\n", th, a.Precision, a.HitRate, a.Right, a.Wrong, b.Precision, b.HitRate, b.Right, b.Wrong)
		if a.Precision >= *target {
			chosen = th
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if chosen == 0 {
		fmt.Fprintf(stdout, "\nno threshold reaches precision %.3f on the tuning half\n", *target)
		return nil
	}
	a, b := quality.Evaluate(tuneOut, "", chosen, true), quality.Evaluate(heldOut, "", chosen, true)
	fmt.Fprintf(stdout, "\nthreshold for precision ≥ %.3f: %.2f (tuning half: precision %.3f, hit rate %.3f; held-out half: precision %.3f, hit rate %.3f)\n",
		*target, chosen, a.Precision, a.HitRate, b.Precision, b.HitRate)
	// The verification radius (cache.verify.radius) for this embedder, at
	// the chosen threshold: how far a judge is asked.
	maxErr := 0.01
	if cfg != nil && cfg.Cache.Verify != nil && cfg.Cache.Verify.MaxErrorRate > 0 {
		maxErr = cfg.Cache.Verify.MaxErrorRate
	}
	curve := quality.RadiusCurve(tuneOut, chosen, quality.Radii)
	radius := quality.ChooseRadius(curve, maxErr+0.02)
	fmt.Fprintf(stdout, "\nwith a judge (cache.verify), tuning half; noisy error: a judge wrong on %.0f %% of its answers:\n", 100*quality.JudgeError)
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "radius\thit\tjudged\tright\twrong\tnoisy error\t")
	for _, p := range curve {
		fmt.Fprintf(tw, "%.2f\t%.3f\t%d\t%d\t%d\t%.3f\t\n", p.Radius, p.HitRate, p.Judged, p.Right, p.Wrong, p.NoisyError)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if radius > 0 {
		h := quality.RadiusCurve(heldOut, chosen, []float64{radius})[0]
		fmt.Fprintf(stdout, "radius for cache.verify.radius: %.2f (widest reached while each step adds as many right candidates as wrong and the noisy error stays ≤ %.2f; held-out half with an exact judge: hit rate %.3f, %d judge calls)\n",
			radius, maxErr+0.02, h.HitRate, h.Judged)
	} else {
		fmt.Fprintf(stdout, "no verification radius keeps the noisy error within %.2f on the tuning half\n", maxErr+0.02)
	}
	if *write {
		if err := writeThreshold(*cfgPath, chosen); err != nil {
			return fmt.Errorf("cache calibrate: %w", err)
		}
		fmt.Fprintf(stdout, "wrote cache.score_threshold: %.2f to %s\n", chosen, *cfgPath)
	}
	return nil
}

// calibrateWorkers is how many embedding calls calibrate keeps in flight.
const calibrateWorkers = 8

// embedThroughRoute embeds every distinct text of pairs through the
// configured embeddings route (cache.embedder), with the route's backends
// and credentials as a node would call them, each call bounded by
// cache.embed_timeout. The first failure ends it with an error: a
// calibration on a part of the pairs would mislead.
func embedThroughRoute(ctx context.Context, cfg *config.Config, pairs []quality.Pair, stderr io.Writer) (map[string][]float32, error) {
	route := cfg.Cache.Embedder
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tokens, stopTokens, err := newBackendTokens(cfg, logger)
	if err != nil {
		return nil, err
	}
	defer stopTokens()
	g, err := node.New(cfg, node.Options{Logger: logger, BackendTokens: tokens})
	if err != nil {
		return nil, fmt.Errorf("building the gateway to call route %s: %w", route, err)
	}
	defer g.Close()
	e := g.RouteEmbedder(route)
	var texts []string
	seen := map[string]bool{}
	for _, p := range pairs {
		for _, t := range []string{p.A, p.B} {
			if !seen[t] {
				seen[t] = true
				texts = append(texts, t)
			}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	vecs := make([][]float32, len(texts))
	var (
		mu    sync.Mutex
		first error
		next  int
		wg    sync.WaitGroup
	)
	for range min(calibrateWorkers, len(texts)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(texts) || ctx.Err() != nil {
					return
				}
				cctx, ccancel := context.WithTimeout(ctx, cfg.Cache.EmbedTimeout)
				v, err := e.Embed(cctx, texts[i])
				ccancel()
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("embedding %d of %d texts: %w", i+1, len(texts), err)
					}
					mu.Unlock()
					cancel()
					return
				}
				vecs[i] = v
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make(map[string][]float32, len(texts))
	for i, t := range texts {
		out[t] = vecs[i]
	}
	return out, nil
}

// loadPairs reads labelled pairs from a TSV or JSONL file.
func loadPairs(path string) ([]quality.Pair, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var out []quality.Pair
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(line), "{") {
			var p struct {
				A, B string
				Same *bool
			}
			if err := json.Unmarshal([]byte(line), &p); err != nil || p.Same == nil || p.A == "" || p.B == "" {
				return nil, fmt.Errorf("%s:%d: want {\"a\":…,\"b\":…,\"same\":true|false}", path, n)
			}
			out = append(out, quality.Pair{Set: "pairs", A: p.A, B: p.B, Same: *p.Same})
			continue
		}
		x := strings.Split(line, "\t")
		if len(x) == 4 { // PAWS: id, a, b, label
			x = x[1:]
		}
		if len(x) != 3 || (x[2] != "0" && x[2] != "1") {
			if n == 1 {
				continue // a header
			}
			return nil, fmt.Errorf("%s:%d: want text_a <TAB> text_b <TAB> 0|1", path, n)
		}
		out = append(out, quality.Pair{Set: "pairs", A: x[0], B: x[1], Same: x[2] == "1"})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no labelled pairs", path)
	}
	return out, nil
}

var thresholdLine = regexp.MustCompile(`(?m)^(\s+score_threshold:\s*)([0-9.]+)(.*)$`)

// writeThreshold sets cache.score_threshold in the config file, keeping
// everything else (comments included) as it is.
func writeThreshold(path string, th float64) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	locs := thresholdLine.FindAllSubmatchIndex(b, -1)
	if len(locs) != 1 {
		return fmt.Errorf("%s: want exactly one score_threshold line under cache: to rewrite (found %d); set it by hand", path, len(locs))
	}
	l := locs[0]
	out := append([]byte{}, b[:l[4]]...)
	out = append(out, strconv.FormatFloat(th, 'f', 2, 64)...)
	out = append(out, b[l[5]:]...)
	if _, err := config.Parse(out, os.LookupEnv); err != nil {
		return fmt.Errorf("the rewritten config would not load: %w", err)
	}
	return os.WriteFile(path, out, 0o600)
}

package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/llmgate/llmgate/internal/embed"
	"github.com/llmgate/llmgate/internal/embed/quality"
)

// Data files read by CacheQuality, inside CacheQualityOptions.DataDir.
const (
	PAWSFile     = "paws_dev.tsv"
	GPTCacheFile = "gptcache_mock_data.json"
)

// Embedders compared by CacheQuality.
const (
	EmbedderLocal  = "local"  // embed.NewLocal: hashed features + GloVe word vectors
	EmbedderHashed = "hashed" // embed.NewHashed: the hashed features alone
)

// QualityPrecisionTarget is the precision the default threshold must reach
// with the guard on, on each data set and on both together.
const QualityPrecisionTarget = 0.97

// CacheQualityOptions configures the cache hit-quality benchmark. Zero
// fields take the defaults given.
type CacheQualityOptions struct {
	// DataDir holds PAWSFile and GPTCacheFile (the repository's
	// shared/data, or index/testdata with PAWSFile/GPTCacheFile of the
	// subsets). Default "../shared/data", relative to the working directory.
	DataDir string
	// PAWSFile and GPTCacheFile name the files in DataDir. Defaults
	// PAWSFile and GPTCacheFile.
	PAWSFile, GPTCacheFile string
	// Thresholds are the cosine-distance thresholds reported. Default 0.02,
	// 0.04, … 0.30.
	Thresholds []float64
}

// CacheQualityRow is one embedder × guard × threshold.
type CacheQualityRow struct {
	Embedder  string  `json:"embedder"`
	Guard     bool    `json:"guard"`
	Threshold float64 `json:"threshold"`
	// HitRate is the share of paraphrase queries (PAWS label 1, GPTCache)
	// that hit their right entry; Precision the share of hits that are
	// right; FalseHitRate the share of all queries that hit a wrong entry.
	// Per data set and for both together.
	Both     quality.Score `json:"both"`
	PAWS     quality.Score `json:"paws"`
	GPTCache quality.Score `json:"gptcache"`
}

// CacheQualityReport is the result of the cache hit-quality benchmark.
type CacheQualityReport struct {
	StartedAt      time.Time `json:"started_at"`
	ElapsedSeconds float64   `json:"elapsed_s"`
	DataDir        string    `json:"data_dir"`
	Pairs          int       `json:"pairs"`
	Queries        int       `json:"queries"`
	// Rows: for each embedder, without then with the guard, each threshold.
	Rows []CacheQualityRow `json:"rows"`
	// ChosenThreshold is the loosest threshold at which the local embedder
	// with the guard reaches QualityPrecisionTarget on PAWS, on GPTCache and
	// on both; 0 when none does.
	ChosenThreshold float64 `json:"chosen_threshold"`
	// EmbedMicros is the mean time to embed one prompt of the data, µs.
	EmbedMicros map[string]float64 `json:"embed_us"`
	// Tiers scores each tier, with and without the guard and the judge, on
	// the held-out half of the pairs.
	Tiers *TierReport `json:"tiers"`
}

// CacheQuality measures cache hit precision and recall on the labelled pairs
// in o.DataDir (method: package internal/embed/quality) for the local and
// the hashed-only embedder, with and without the match guard, at each
// threshold; prints a table to w and chooses the default threshold. It runs
// in-process (no child processes) in about half a minute on the full data.
func CacheQuality(ctx context.Context, o CacheQualityOptions, w io.Writer) (*CacheQualityReport, error) {
	if o.DataDir == "" {
		o.DataDir = filepath.Join("..", "shared", "data")
	}
	if o.PAWSFile == "" {
		o.PAWSFile = PAWSFile
	}
	if o.GPTCacheFile == "" {
		o.GPTCacheFile = GPTCacheFile
	}
	if len(o.Thresholds) == 0 {
		for i := 1; i <= 15; i++ {
			o.Thresholds = append(o.Thresholds, math.Round(float64(i)*0.02*100)/100)
		}
	}
	start := time.Now()
	pairs, err := quality.LoadDir(o.DataDir, o.PAWSFile, o.GPTCacheFile)
	if err != nil {
		return nil, fmt.Errorf("cache quality data: %w", err)
	}
	rep := &CacheQualityReport{StartedAt: start, DataDir: o.DataDir, Pairs: len(pairs), EmbedMicros: map[string]float64{}}
	for _, e := range []struct {
		name string
		l    *embed.Local
	}{{EmbedderLocal, embed.NewLocal()}, {EmbedderHashed, embed.NewHashed()}} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var n int
		var spent time.Duration
		timed := func(s string) []float32 {
			t0 := time.Now()
			v := e.l.Embed(s)
			spent += time.Since(t0)
			n++
			return v
		}
		outs := quality.Run(pairs, timed)
		rep.Queries = len(outs)
		rep.EmbedMicros[e.name] = float64(spent.Microseconds()) / float64(max(n, 1))
		for _, g := range []bool{false, true} {
			for _, th := range o.Thresholds {
				row := CacheQualityRow{Embedder: e.name, Guard: g, Threshold: th,
					Both:     quality.Evaluate(outs, "", th, g),
					PAWS:     quality.Evaluate(outs, quality.PAWS, th, g),
					GPTCache: quality.Evaluate(outs, quality.GPTCache, th, g)}
				rep.Rows = append(rep.Rows, row)
				if e.name == EmbedderLocal && g && row.Both.Precision >= QualityPrecisionTarget &&
					row.PAWS.Precision >= QualityPrecisionTarget && row.GPTCache.Precision >= QualityPrecisionTarget &&
					row.Both.Right > 0 && th > rep.ChosenThreshold {
					rep.ChosenThreshold = th
				}
			}
		}
	}
	if rep.Tiers, err = tierQuality(ctx, pairs); err != nil {
		return nil, err
	}
	rep.ElapsedSeconds = time.Since(start).Seconds()
	writeCacheQuality(w, rep)
	writeTierQuality(w, rep.Tiers)
	return rep, nil
}

func writeCacheQuality(w io.Writer, rep *CacheQualityReport) {
	if w == nil {
		return
	}
	fmt.Fprintf(w, "cache quality: %d labelled pairs from %s, %d queries; nearest entry by exact search\n",
		rep.Pairs, rep.DataDir, rep.Queries)
	fmt.Fprintf(w, "hit = paraphrase queries that hit their right entry; prec = right hits / hits; false = wrong hits / queries\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "embedder\tguard\tthreshold\thit\tprec\tfalse\tPAWS hit\tPAWS prec\tGPTCache hit\tGPTCache prec\tright\twrong\t")
	for _, r := range rep.Rows {
		g := "off"
		if r.Guard {
			g = "on"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.3f\t%.3f\t%.4f\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t%d\t\n",
			r.Embedder, g, r.Threshold, r.Both.HitRate, r.Both.Precision, r.Both.FalseHits,
			r.PAWS.HitRate, r.PAWS.Precision, r.GPTCache.HitRate, r.GPTCache.Precision, r.Both.Right, r.Both.Wrong)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nembed time per prompt: local %.1f µs, hashed %.1f µs\n",
		rep.EmbedMicros[EmbedderLocal], rep.EmbedMicros[EmbedderHashed])
	if rep.ChosenThreshold > 0 {
		fmt.Fprintf(w, "default threshold: %.2f (loosest with precision ≥ %.2f on PAWS, GPTCache and both, local embedder, guard on)\n",
			rep.ChosenThreshold, QualityPrecisionTarget)
	} else {
		fmt.Fprintf(w, "default threshold: none of the thresholds reaches precision %.2f with the guard on\n", QualityPrecisionTarget)
	}
}

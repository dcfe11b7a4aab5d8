package api

import (
	"fmt"
	"time"
)

// Chart geometry, in SVG user units; the SVG scales to its container.
const (
	chartWidth   = 720
	chartHeight  = 120
	chartMinBars = 12
	chartMaxBars = 60
	// chartHourly is the longest span drawn hour by hour; longer ones are
	// drawn day by day.
	chartHourly = 48 * time.Hour
)

// chart is a bar chart of a group's crashes over time, drawn on the server
// as SVG: no script, and it prints.
type chart struct {
	Width, Height int
	Bars          []bar
	Max           int64
	From, To      string
	Step          string
}

type bar struct {
	X, Y, W, H int
	Count      int64
	Label      string
}

// chartRange picks buckets for a group seen from first to last: hours for a
// short-lived group, days otherwise, ending with the bucket of the last
// crash and going back at most chartMaxBars buckets.
func chartRange(first, last time.Time) (from time.Time, step time.Duration, n int) {
	step = time.Hour
	if last.Sub(first) > chartHourly {
		step = 24 * time.Hour
	}
	end := last.UTC().Truncate(step)
	n = int(end.Sub(first.UTC().Truncate(step))/step) + 1
	n = max(chartMinBars, min(n, chartMaxBars))
	return end.Add(-time.Duration(n-1) * step), step, n
}

func newChart(from time.Time, step time.Duration, counts []int64) *chart {
	c := &chart{Width: chartWidth, Height: chartHeight, Step: "hour"}
	format := "2006-01-02 15:00"
	if step >= 24*time.Hour {
		c.Step, format = "day", "2006-01-02"
	}
	for _, n := range counts {
		c.Max = max(c.Max, n)
	}
	slot := chartWidth / max(len(counts), 1)
	for i, n := range counts {
		h := 0
		if c.Max > 0 {
			h = int(n * (chartHeight - 2) / c.Max)
		}
		if n > 0 {
			h = max(h, 2) // one crash among thousands must still show
		}
		at := from.Add(time.Duration(i) * step).UTC()
		c.Bars = append(c.Bars, bar{
			X: i*slot + 1, Y: chartHeight - h, W: max(slot-2, 1), H: h, Count: n,
			Label: fmt.Sprintf("%s: %d", at.Format(format), n),
		})
	}
	c.From = from.UTC().Format(format)
	c.To = from.Add(time.Duration(len(counts)-1) * step).UTC().Format(format)
	return c
}

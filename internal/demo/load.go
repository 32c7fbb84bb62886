package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ytkeep/ytkeep/internal/testbed"
)

// LoadOptions configure a load run against a real receiver process.
type LoadOptions struct {
	BinDir   string
	Rate     int           // requests per second
	Duration time.Duration // how long to send
	Dir      string        // spool location; empty for a temporary directory
}

// Load starts a receiver (no worker: jobs pile up in the spool, each one
// durably enqueued), sends validly signed slash commands at a fixed rate
// and prints throughput and latency percentiles.
func Load(ctx context.Context, out io.Writer, opt LoadOptions) error {
	dir := opt.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "ytkeep-load-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	w, err := testbed.NewWorld(ctx, testbed.WorldOptions{Dir: dir, BinDir: opt.BinDir, NoWorker: true, AnyUser: true})
	if err != nil {
		return err
	}
	defer w.Close()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 0}, Timeout: 10 * time.Second}
	total := int(float64(opt.Rate) * opt.Duration.Seconds())
	lat := make([]time.Duration, total)
	errs := make([]string, 0)
	var mu sync.Mutex
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(opt.Rate)
	start := time.Now()
	for i := 0; i < total; i++ {
		// Open-loop: request i is due at start + i*interval, whatever the
		// latency of earlier ones (no coordinated omission).
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func(i int, due time.Time) {
			defer wg.Done()
			inv := w.Invocation("https://youtu.be/dQw4w9WgXcQ")
			inv.User = fmt.Sprintf("ULOAD%06d", i) // each user is rate-limited
			reply, _, status, err := w.Slack.Send(ctx, client, w.Endpoint, inv)
			lat[i] = time.Since(due)
			if err == nil && (status != http.StatusOK || !strings.HasPrefix(reply, "Queued")) {
				err = fmt.Errorf("HTTP %d: %s", status, reply)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
			}
		}(i, due)
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	queued, _ := os.ReadDir(w.SpoolDir + "/incoming")
	fmt.Fprintf(out, "load: %d signed slash commands at %d req/s for %v against a receiver process\n", total, opt.Rate, opt.Duration)
	fmt.Fprintf(out, "throughput %.1f req/s, latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
		float64(total)/elapsed.Seconds(), ms(pct(0.5)), ms(pct(0.9)), ms(pct(0.99)), ms(lat[len(lat)-1]))
	fmt.Fprintf(out, "errors %d, jobs durably queued %d\n", len(errs), len(queued))
	if len(errs) > 0 {
		return fmt.Errorf("%d requests failed, first: %s", len(errs), errs[0])
	}
	if len(queued) != total {
		return fmt.Errorf("%d jobs queued for %d accepted requests", len(queued), total)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

package worker

import (
	"time"

	"github.com/ytkeep/ytkeep/internal/metrics"
)

// registerMetrics has w.opt.Metrics read the queue's gauges. (The jobs'
// state changes are counted from the audit log, metrics.Events; the
// downloads' times and sizes where they end, download.go.)
func (w *Worker) registerMetrics() {
	w.opt.Metrics.WatchQueue(func() metrics.QueueStats { return w.queueStats(time.Now()) })
}

// queueStats returns the queue's length, the age of its oldest task and
// the tasks the slots hold.
func (w *Worker) queueStats(now time.Time) metrics.QueueStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := metrics.QueueStats{Depth: len(w.queue), Running: w.busy}
	for _, t := range w.queue {
		if !t.queued.IsZero() {
			st.Oldest = max(st.Oldest, now.Sub(t.queued))
		}
	}
	return st
}

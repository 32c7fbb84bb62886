package daemon

import (
	"log/slog"
	"slices"
	"time"

	"github.com/ytkeep/ytkeep/internal/config"
	"github.com/ytkeep/ytkeep/internal/confine"
	"github.com/ytkeep/ytkeep/internal/metrics"
)

// Metrics returns the daemon's metrics (metrics.New: call it before the
// daemon confines itself), or nil when metrics.dir is empty.
func Metrics(cfg *config.Config, name string) *metrics.Set {
	if cfg.Metrics.Dir == "" {
		return nil
	}
	return metrics.New(name)
}

// StartMetrics opens the daemon's metrics file and writes it every
// metrics.interval_seconds until stop, which writes it a last time. Call
// it as the daemon's user (the directory must be that user's), before
// the daemon confines itself. With set nil it does nothing.
func StartMetrics(cfg *config.Config, set *metrics.Set, log *slog.Logger) (stop func(), err error) {
	if set == nil {
		return func() {}, nil
	}
	return metrics.Start(cfg.Metrics.Dir, time.Duration(cfg.Metrics.IntervalSeconds)*time.Second, set, log)
}

// MetricsDirs is what the daemon's Landlock rules add to FileDirs for its
// metrics file: its own directory under metrics.dir, or nothing when
// metrics are off.
func MetricsDirs(cfg *config.Config, name string) []string {
	if cfg.Metrics.Dir == "" {
		return nil
	}
	return []string{metrics.Dir(cfg.Metrics.Dir, name)}
}

// WithMetrics returns r with the daemon's metrics directory in its
// FileDirs (MetricsDirs).
func WithMetrics(r *confine.Rules, cfg *config.Config, name string) *confine.Rules {
	r.FileDirs = append(slices.Clone(r.FileDirs), MetricsDirs(cfg, name)...)
	return r
}

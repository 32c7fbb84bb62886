package worker

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/metrics"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// AlertRelay is the worker's alert sink. The worker has no network, so
// its alerts cross to the courier as small files in results/
// (<id>.alert); the courier checks them like any other file from this
// side and posts them to the admin channel. A full queue drops (and
// counts) rather than block the worker; files go out at most one per
// Spacing.
type AlertRelay struct {
	Spacing time.Duration
	// Metrics counts the alerts relayed and dropped (nil: not counted).
	Metrics *metrics.Set
	log     *slog.Logger // without the sink (no loops)
	q       chan audit.AlertRecord
	dropped atomic.Int64
}

// NewAlertRelay returns a relay; call Run once the spool is open.
func NewAlertRelay(log *slog.Logger) *AlertRelay {
	return &AlertRelay{Spacing: 200 * time.Millisecond, log: log, q: make(chan audit.AlertRecord, 128)}
}

// Alert queues a without blocking.
func (r *AlertRelay) Alert(a audit.AlertRecord) {
	select {
	case r.q <- a:
	default:
		r.dropped.Add(1)
		r.Metrics.AlertDropped("queue_full", 1)
	}
}

// Run writes queued alerts to out until ctx ends.
func (r *AlertRelay) Run(ctx context.Context, out *spool.Outbox) {
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-r.q:
			r.write(out, a)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.Spacing):
		}
	}
}

// Flush writes what is queued now (for short-lived processes) and
// returns the first error: an alert it could not write.
func (r *AlertRelay) Flush(out *spool.Outbox) error {
	var first error
	for {
		select {
		case a := <-r.q:
			if err := r.write(out, a); err != nil && first == nil {
				first = err
			}
		default:
			return first
		}
	}
}

func (r *AlertRelay) write(out *spool.Outbox, a audit.AlertRecord) error {
	if a.Attrs == nil {
		a.Attrs = map[string]string{}
	}
	if n := r.dropped.Swap(0); n > 0 && len(a.Attrs) < audit.MaxAlertAttrs {
		a.Attrs["dropped_before"] = strconv.FormatInt(n, 10)
	}
	data, err := job.MarshalAlert(a)
	if err == nil {
		err = out.Put(job.AlertName(job.NewID()), data)
	}
	if err != nil {
		r.log.Error("couldn't relay an alert to the courier", "event", a.Event, "err", err)
		r.Metrics.AlertDropped("relay_failed", 1)
	} else {
		r.Metrics.AlertSent(1)
	}
	return err
}

// Results returns the outbox to the courier (for the alert relay).
func (w *Worker) Results() *spool.Outbox { return w.results }

package notify

import (
	"log/slog"
	"os"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// PendingAlerts keeps alerts a daemon could not post when they were
// raised, as files in its private alerts/ directory, until its next start
// posts them. Under systemd a daemon's ExecStopPost= (its -exit-alert)
// cannot post: systemd removes the unit's credentials, and with them the
// webhook URL, before it runs. Restart= starts the daemon again seconds
// later, and the crash alert goes out then.
type PendingAlerts struct {
	tmp, dir *spool.Dir
	daemon   string // whose they are: "receiver" or "courier"
	queued   []audit.AlertRecord
}

// OpenPendingAlerts opens a daemon's alerts directory and its tmp
// directory, where files are written before they are renamed into place
// (spool.Layout's Receiver("alerts") and Receiver("tmp"), or the
// courier's).
func OpenPendingAlerts(daemon, tmpDir, alertsDir string) (*PendingAlerts, error) {
	tmp, err := spool.OpenDir(tmpDir)
	if err != nil {
		return nil, err
	}
	dir, err := spool.OpenDir(alertsDir)
	if err != nil {
		tmp.Close()
		return nil, err
	}
	return &PendingAlerts{tmp: tmp, dir: dir, daemon: daemon}, nil
}

// Alert is the sink: it keeps a for Save.
func (p *PendingAlerts) Alert(a audit.AlertRecord) { p.queued = append(p.queued, a) }

// Replay hands every alert kept so far to sink too.
func (p *PendingAlerts) Replay(sink audit.Sink) {
	for _, a := range p.queued {
		sink.Alert(a)
	}
}

// Save durably writes every alert kept so far, one file each.
func (p *PendingAlerts) Save() error {
	for _, a := range p.queued {
		data, err := job.MarshalAlert(a)
		if err != nil {
			return err
		}
		if err := spool.WriteFile(p.tmp, p.dir, job.AlertName(job.NewID()), data, 0o600, -1, false); err != nil {
			return err
		}
	}
	p.queued = nil
	return nil
}

// Deliver logs every saved alert as an alert again (so that it reaches
// the admin channel through log's sink), marked pending=true with the
// time it was raised, and removes its file. A file that is not a valid
// alert of our own is logged as such and removed.
func (p *PendingAlerts) Deliver(log *slog.Logger) {
	names, err := p.dir.Names()
	if err != nil {
		log.Error("couldn't list pending alerts", "err", err)
		return
	}
	for _, name := range names {
		if n, err := job.ParseName(name); err != nil || n.Kind != job.KindAlert {
			continue
		}
		data, err := spool.ReadFile(p.dir, name, os.Getuid(), job.MaxAlertSize)
		var a *audit.AlertRecord
		if err == nil {
			a, err = job.ParseAlert(data, p.daemon)
		}
		if err != nil {
			audit.Alert(log, audit.Quarantined, "file", p.daemon+"/alerts/"+name, "reason", err.Error())
		} else {
			attrs := []any{"pending", true, "at", a.Time.UTC().Format(time.RFC3339)}
			for k, v := range a.Attrs {
				if k != "pending" && k != "at" && k != "event" && k != "alert" && k != "daemon" {
					attrs = append(attrs, k, v)
				}
			}
			audit.Alert(log, a.Event, attrs...)
		}
		if err := p.dir.Remove(name); err != nil {
			log.Error("couldn't remove a pending alert", "file", name, "err", err)
		}
	}
	p.dir.Sync()
}

// Close closes the directories.
func (p *PendingAlerts) Close() {
	p.tmp.Close()
	p.dir.Close()
}

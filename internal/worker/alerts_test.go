package worker

import (
	"log/slog"
	"os"
	"testing"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// TestAlertRelay: queued alerts become files the receiver accepts; a full
// queue drops and says how many, never blocks.
func TestAlertRelay(t *testing.T) {
	tmp, dst := t.TempDir(), t.TempDir()
	td, err := spool.OpenDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	dd, err := spool.OpenDir(dst)
	if err != nil {
		t.Fatal(err)
	}
	r := NewAlertRelay(slog.New(slog.DiscardHandler))
	for range 130 {
		r.Alert(audit.AlertRecord{Daemon: "worker", Event: audit.Violation}) // no attributes at all
	}
	if err := r.Flush(&spool.Outbox{Tmp: td, Dst: dd, GID: -1}); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dst)
	if len(ents) != 128 {
		t.Fatalf("%d alert files, want the 128 the queue holds", len(ents))
	}
	dropped := 0
	for _, e := range ents {
		data, err := os.ReadFile(dst + "/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		a, err := job.ParseAlert(data, "worker")
		if err != nil {
			t.Fatalf("%s: the receiver would refuse it: %v", e.Name(), err)
		}
		if a.Attrs["dropped_before"] == "2" {
			dropped++
		}
	}
	if dropped != 1 {
		t.Errorf("%d files report the 2 dropped alerts, want 1", dropped)
	}
}

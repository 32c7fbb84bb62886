package notify

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/spool"
)

type collect []audit.AlertRecord

func (c *collect) Alert(a audit.AlertRecord) { *c = append(*c, a) }

// The receiver's exit alert, raised where it cannot be posted (systemd's
// ExecStopPost=, after the credentials are gone), survives in
// receiver/alerts/ and is posted at the next start, once.
func TestPendingAlertsSurviveUntilNextStart(t *testing.T) {
	root := t.TempDir()
	l := spool.Layout{Root: filepath.Join(root, "spool")}
	if err := l.CreateSingleUser(filepath.Join(root, "downloads")); err != nil {
		t.Fatal(err)
	}
	// The exit alert, as -exit-alert raises it.
	p, err := OpenPendingAlerts("receiver", l.Receiver("tmp"), l.Receiver("alerts"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SERVICE_RESULT", "signal")
	t.Setenv("EXIT_CODE", "killed")
	t.Setenv("EXIT_STATUS", "SYS")
	if !audit.ReportExit(audit.WithSink(slog.New(slog.DiscardHandler), "receiver", p), "ytkeep-receiver") {
		t.Fatal("no exit alert raised")
	}
	if err := p.Save(); err != nil {
		t.Fatal(err)
	}
	p.Close()
	// Something that is not an alert of ours.
	if err := os.WriteFile(l.Receiver("alerts/zzzzzzzzzzzzzzzzzzzzzzzzzz.alert"), []byte(`{"event":"rm -rf"}`), 0o600); err != nil {
		t.Fatal(err)
	}

	// The next start.
	var got collect
	p, err = OpenPendingAlerts("receiver", l.Receiver("tmp"), l.Receiver("alerts"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Deliver(audit.WithSink(slog.New(slog.DiscardHandler), "receiver", &got))
	if len(got) != 2 {
		t.Fatalf("delivered %d alerts, want the exit alert and a quarantine notice: %+v", len(got), got)
	}
	var crash, refused bool
	for _, a := range got {
		switch a.Event {
		case audit.Crashed:
			crash = a.Attrs["service"] == "ytkeep-receiver" && a.Attrs["signal"] == "SIGSYS" && a.Attrs["pending"] == "true" && a.Attrs["at"] != ""
		case audit.Quarantined:
			refused = true
		}
	}
	if !crash || !refused {
		t.Fatalf("got %+v", got)
	}
	if names, _ := os.ReadDir(l.Receiver("alerts")); len(names) != 0 {
		t.Fatalf("receiver/alerts not emptied: %v", names)
	}
	// Delivered once: a second start has nothing to post.
	got = nil
	p.Deliver(audit.WithSink(slog.New(slog.DiscardHandler), "receiver", &got))
	if len(got) != 0 {
		t.Fatalf("delivered again: %+v", got)
	}
}

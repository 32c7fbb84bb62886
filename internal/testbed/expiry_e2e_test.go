package testbed

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/reply"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// queueAs puts j into incoming/ as the receiver would, owned by the
// receiver's uid (as root), with a token sealed with the receiver's key:
// a job the test dates as it likes.
func queueAs(t *testing.T, w *World, j *job.Job, info reply.Info) {
	t.Helper()
	layout := spool.Layout{Root: w.SpoolDir}
	sealer, err := reply.Read(layout.Receiver(reply.KeyFile), -1)
	if err != nil {
		t.Fatal(err)
	}
	if j.Reply, err = sealer.Seal(j.ID, info); err != nil {
		t.Fatal(err)
	}
	data, err := j.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(layout.Receiver("tmp"), "."+j.FileName()+".test")
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(tmp, ReceiverUID, SpoolGID); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(tmp, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(tmp, filepath.Join(layout.Incoming(), j.FileName())); err != nil {
		t.Fatal(err)
	}
}

// TestResultAfterResponseURLExpiry: a job that ends more than 30 minutes
// after its command, when Slack no longer takes posts to the command's
// response_url, still reaches its requester: the status message in the
// DM says it is saved, and nothing is posted to the expired URL.
func TestResultAfterResponseURLExpiry(t *testing.T) {
	w := newWorld(t, WorldOptions{Bot: true})
	api := w.WebAPI
	dm := api.DMOf(User)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	created := time.Now().Add(-45 * time.Minute).Unix()
	const responseID = "expired-1"
	j := &job.Job{V: job.Version, ID: job.NewID(), Video: "dQw4w9WgXcQ", Format: job.FormatBest,
		Team: Team, User: User, Channel: Channel, Created: created}
	queueAs(t, w, j, reply.Info{URL: w.Slack.URL + "/response/" + responseID, Created: created,
		Video: j.Video, Format: j.Format, User: User})
	if err := api.WaitFor(ctx, func(a *WebAPI) bool {
		m := a.Messages(dm)
		return len(m) == 1 && strings.HasPrefix(m[0].Text, ":white_check_mark: Saved")
	}); err != nil {
		t.Fatalf("DM %+v: %v\ncourier log:\n%s\nworker log:\n%s", api.Messages(dm), err, w.Courier.Log(), w.Worker.Log())
	}
	if got := w.Slack.Messages(responseID); len(got) != 0 {
		t.Errorf("posted to an expired response_url: %q", got)
	}
}

package worker

import (
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// TestDailyQuota: a user past the day's download quota is refused with a
// clear class before a download starts; another user is not; a file
// already stored costs nothing; the counts survive a restart and start
// afresh the next day.
func TestDailyQuota(t *testing.T) {
	// A fixed day: on the real clock, a run across 00:00 UTC would see
	// the counts start afresh in the middle.
	now := time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)
	h := newHarness(t, func(o *Options, _ *time.Duration) {
		o.DailyBytes, o.Concurrency, o.Now = 20, 1, func() time.Time { return now }
	})
	h.start()
	for i, tt := range []struct {
		video, user string
		want        job.Status
		class       job.Class
	}{
		{"okokokokok1", "U1", job.StatusDone, job.ClassNone},    // 11 bytes
		{"okokokokok2", "U1", job.StatusDone, job.ClassNone},    // 13 more: 24, past 20
		{"slowokAAAAA", "U1", job.StatusFailed, job.ClassQuota}, // refused
		{"slowokAAAAA", "U2", job.StatusDone, job.ClassNone},    // another user: 10
		{"okokokokok1", "U1", job.StatusDone, job.ClassNone},    // stored already: free
	} {
		j := newJob(tt.video, job.FormatBest)
		j.User = tt.user
		h.submit(j)
		if r := h.result(j.ID); r.Status != tt.want || r.Class != tt.class {
			t.Fatalf("job %d (%s for %s): %+v", i, tt.video, tt.user, r)
		}
	}
	h.stop()
	wdir, err := spool.OpenDir(h.layout.Worker(""))
	if err != nil {
		t.Fatal(err)
	}
	tmp, _ := spool.OpenDir(h.layout.Worker("tmp"))
	u, err := openUsage(wdir, tmp, 20, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	if u.Bytes["U1"] != 24 || u.Bytes["U2"] != 10 || u.reserve("U1", 0) || !u.reserve("U2", 0) {
		t.Fatalf("after a restart: %+v", u.Bytes)
	}
	now = now.Add(24 * time.Hour)
	if !u.reserve("U1", 0) {
		t.Error("the quota did not start afresh the next day")
	}
}

package courier

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/notify"
	"github.com/ytkeep/ytkeep/internal/reply"
	"github.com/ytkeep/ytkeep/internal/spool"
	"github.com/ytkeep/ytkeep/internal/testutil"
)

type syncBuffer = testutil.SyncBuffer

type fakeSlack = testutil.Slack

func newFakeSlack(tb testing.TB) *fakeSlack { return testutil.NewSlack(tb) }

// requester is the user of the fixture's jobs.
const requester = "U0TEST0001"

// fixture is a courier on a spool of one user, with the receiver's key
// (sealer) to make the jobs a receiver would have queued.
type fixture struct {
	s      *Service
	layout spool.Layout
	sealer *reply.Sealer
	log    *syncBuffer
	slack  *fakeSlack
	now    time.Time
}

func newFixture(t *testing.T) *fixture { return newFixtureWith(t, nil) }

// newFixtureWith is newFixture with options mut changes first.
func newFixtureWith(t testing.TB, mut func(*Options)) *fixture {
	root := t.TempDir()
	f := &fixture{layout: spool.Layout{Root: filepath.Join(root, "spool")}, log: &syncBuffer{}, slack: newFakeSlack(t), now: time.Now()}
	if err := f.layout.CreateSingleUser(filepath.Join(root, "dl")); err != nil {
		t.Fatal(err)
	}
	d, err := spool.OpenDir(f.layout.Receiver(""))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if f.sealer, err = reply.Create(d); err != nil {
		t.Fatal(err)
	}
	opt := Options{SpoolDir: f.layout.Root,
		ResponseURLAllowed: func(u string) bool { return strings.HasPrefix(u, f.slack.URL()+"/") },
		Now:                func() time.Time { return f.now },
		Logger:             slog.New(slog.NewJSONHandler(f.log, nil))}
	if mut != nil {
		mut(&opt)
	}
	f.s, err = New(opt, notify.NewNotifier())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// job is a job as the receiver queues it, for video and format, whose
// response_url is the fake Slack's path.
func (f *fixture) job(t testing.TB, video string, format job.Format, path string) *job.Job {
	t.Helper()
	j := &job.Job{V: job.Version, ID: job.NewID(), Video: video, Format: format, Team: "T1", User: requester, Channel: "C1", Created: f.now.Unix()}
	tok, err := f.sealer.Seal(j.ID, reply.Info{URL: f.slack.URL() + path, Created: j.Created, Video: video, Format: format, User: j.User})
	if err != nil {
		t.Fatal(err)
	}
	j.Reply = tok
	return j
}

// writeResult plays the worker.
func (f *fixture) writeResult(t testing.TB, r *job.Result) {
	t.Helper()
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	f.put(t, r.FileName(), b)
}

// put renames data into results/ as name, as the worker's outbox does:
// the courier never sees a half-written file.
func (f *fixture) put(t testing.TB, name string, data []byte) {
	t.Helper()
	tmp := filepath.Join(f.layout.Root, "."+name)
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(f.layout.Results(), name)); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) runResults(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.s.RunResults(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// waitPosts waits until f holds n posts (a minute at most: a hang guard).
func waitPosts(t *testing.T, f *fakeSlack, n int) []string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if p := f.Posts(); len(p) >= n {
			return p
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("posts %q, want %d", f.Posts(), n)
	return nil
}

func TestResults(t *testing.T) {
	f := newFixture(t)
	j := f.job(t, "dQw4w9WgXcQ", job.Format720, "/r/1")
	j2 := f.job(t, "aaaaaaaaaaa", job.Format720, "/r/2")
	f.runResults(t)

	// Hostile results, as a compromised worker would write them.
	forged := j.Result(job.StatusDone, job.ClassNone)
	forged.Job, forged.File = job.NewID(), "dQw4w9WgXcQ-720p.mp4" // unknown job, its token moved
	f.writeResult(t, forged)
	transplant := j2.Result(job.StatusFailed, job.ClassTimeout)
	transplant.Reply = j.Reply // j's token on j2's result
	f.writeResult(t, transplant)
	wrongFile := j.Result(job.StatusDone, job.ClassNone)
	wrongFile.File = "aaaaaaaaaaa-720p.mp4"
	f.writeResult(t, wrongFile)
	renamed, _ := j.Result(job.StatusFailed, job.ClassTimeout).Marshal()
	os.WriteFile(filepath.Join(f.layout.Results(), j.ID+".started.result"), renamed, 0o640)
	os.WriteFile(filepath.Join(f.layout.Results(), "junk"), []byte("x"), 0o640)
	deadline := time.Now().Add(time.Minute) // a hang guard
	for {
		q, _ := os.ReadDir(f.layout.Courier("quarantine"))
		if len(q) == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("quarantine holds %d files, want 5\n%s", len(q), f.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p := f.slack.Posts(); len(p) != 0 {
		t.Fatalf("hostile results were posted: %q", p)
	}

	f.writeResult(t, j.Result(job.StatusStarted, job.ClassNone))
	done := j.Result(job.StatusDone, job.ClassNone)
	done.Title, done.Duration, done.Size, done.File = "<!channel> & <https://evil|click>", 3725, 5<<20, "dQw4w9WgXcQ-720p.mp4"
	f.writeResult(t, done)
	posts := waitPosts(t, f.slack, 2)
	if !strings.Contains(posts[0], "/r/1 :hourglass_flowing_sand: Downloading `dQw4w9WgXcQ` (720p)") {
		t.Errorf("started post %q", posts[0])
	}
	want := "/r/1 :white_check_mark: Saved *&lt;!channel&gt; &amp; &lt;https:\u200b//evil|click&gt;* (1:02:05, 5.0 MiB) as `dQw4w9WgXcQ-720p.mp4`."
	if posts[1] != want {
		t.Errorf("done post\n%q, want\n%q", posts[1], want)
	}
	// The same final result again (the worker writes it again when it
	// died before forgetting the job) is shown once, quietly.
	before := strings.Count(f.log.String(), `"alert":true`)
	f.writeResult(t, done)
	deadline = time.Now().Add(time.Minute) // a hang guard
	for !strings.Contains(f.log.String(), `"reason":"repeat"`) {
		if time.Now().After(deadline) {
			t.Fatal("no event for a repeated final result")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(f.log.String(), `"alert":true`); n != before {
		t.Errorf("a repeated final result raised %d alerts", n-before)
	}
	// Another final result after the final one is refused and reported.
	other := j.Result(job.StatusFailed, job.ClassTimeout)
	f.writeResult(t, other)
	deadline = time.Now().Add(time.Minute) // a hang guard
	for !strings.Contains(f.log.String(), "result_after_final") {
		if time.Now().After(deadline) {
			t.Fatal("no alert for a result after the final one")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(f.slack.Posts()); n != 2 {
		t.Fatalf("%d posts after a replay", n)
	}
	// An intermediate result handled after the final one (the spool
	// gives no order; a restart handles its claimed files in directory
	// order) is dropped quietly: an event, not an alert.
	alerts := strings.Count(f.log.String(), `"alert":true`)
	f.writeResult(t, j.Result(job.StatusStarted, job.ClassNone))
	deadline = time.Now().Add(time.Minute) // a hang guard
	for !strings.Contains(f.log.String(), `"reason":"late"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no event for a late intermediate result\n%s", f.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(f.log.String(), `"alert":true`); n != alerts {
		t.Errorf("a late intermediate result raised an alert:\n%s", f.log.String())
	}
	if n := len(f.slack.Posts()); n != 2 {
		t.Fatalf("%d posts after a late intermediate result", n)
	}
}

// TestResultsOnlyFromTheWorker: results/ is writable by the spool group,
// the receiver included, which holds the reply key: a result whose file
// is not the worker's user's is quarantined, whatever it holds. (As root,
// with a result file of another uid; the worker's uid is the owner of
// worker/.)
func TestResultsOnlyFromTheWorker(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED LOUDLY: needs root to write a result as another user; CI runs as root")
	}
	f := newFixture(t)
	j := f.job(t, "dQw4w9WgXcQ", job.Format720, "/r/1")
	r := j.Result(job.StatusStarted, job.ClassNone)
	b, _ := r.Marshal()
	f.put(t, r.FileName(), b)
	// The receiver's user (not the worker's) wrote it.
	if err := os.Chown(filepath.Join(f.layout.Results(), r.FileName()), 61991, 61991); err != nil {
		t.Fatal(err)
	}
	f.runResults(t)
	deadline := time.Now().Add(time.Minute) // a hang guard
	for !strings.Contains(f.log.String(), `"event":"quarantined"`) {
		if time.Now().After(deadline) {
			t.Fatalf("a result of another uid was not quarantined:\n%s", f.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p := f.slack.Posts(); len(p) != 0 {
		t.Fatalf("posted: %q", p)
	}
}

func TestReplyBudget(t *testing.T) {
	f := newFixture(t)
	j := f.job(t, "dQw4w9WgXcQ", job.FormatBest, "/r/1")
	info, err := f.sealer.Open(j.ID, j.Reply)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		f.s.reply(context.Background(), j.Result(job.StatusStarted, job.ClassNone), info)
	}
	if n := len(f.slack.Posts()); n != MaxPosts {
		t.Fatalf("%d posts to one response_url, want %d", n, MaxPosts)
	}
	b, _ := f.s.loadBudget(j.ID)
	if b.Posts != MaxPosts {
		t.Fatalf("persisted post count %d", b.Posts)
	}
	// An expired response_url is not posted to.
	j2 := f.job(t, "dQw4w9WgXcQ", job.FormatBest, "/r/2")
	info2, _ := f.sealer.Open(j2.ID, j2.Reply)
	f.now = f.now.Add(ResponseURLLifetime)
	f.s.reply(context.Background(), j2.Result(job.StatusStarted, job.ClassNone), info2)
	if n := len(f.slack.Posts()); n != MaxPosts {
		t.Fatal("posted to an expired response_url")
	}
	if !strings.Contains(f.log.String(), "response_url_expired") {
		t.Fatal("no audit event for the expired response_url")
	}
	// Counts of expired response URLs are swept.
	f.now = f.now.Add(2 * ResponseURLLifetime)
	f.s.sweepBudgets()
	if names, _ := f.s.replies.Names(); len(names) != 0 {
		t.Fatalf("budgets kept after expiry: %v", names)
	}
}

// TestRelayedAlerts: an alert file from the worker becomes an alert of
// the courier, marked as the worker's; hostile ones are quarantined.
func TestRelayedAlerts(t *testing.T) {
	f := newFixture(t)
	f.runResults(t)
	good, _ := json.Marshal(audit.AlertRecord{Time: time.Now(), Daemon: "receiver", Event: audit.Violation,
		Attrs: map[string]string{"job": "j1", "signal": "SIGSYS", "from": "forged"}})
	f.put(t, job.AlertName(job.NewID()), good)
	hostile := map[string][]byte{
		"unknown event": []byte(`{"event":"rm -rf","attrs":{}}`),
		"extra field":   []byte(`{"event":"violation","text":"<!channel>"}`),
		"too large":     []byte(`{"event":"violation","attrs":{"x":"` + strings.Repeat("a", 9000) + `"}}`),
		"not json":      []byte("SIGSYS"),
	}
	for _, data := range hostile {
		f.put(t, job.AlertName(job.NewID()), data)
	}
	// The relayed alert is logged before its file leaves claimed/: wait
	// for both.
	deadline := time.Now().Add(time.Minute)
	for {
		q, _ := os.ReadDir(f.layout.Courier("quarantine"))
		c, _ := os.ReadDir(f.layout.Courier("claimed"))
		log := f.log.String()
		if len(q) == len(hostile) && len(c) == 0 && strings.Contains(log, `"event":"violation"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("quarantine holds %d files, want %d; claimed holds %d\n%s", len(q), len(hostile), len(c), log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var relayed map[string]any
	for _, line := range strings.Split(f.log.String(), "\n") {
		if strings.Contains(line, `"event":"violation"`) {
			json.Unmarshal([]byte(line), &relayed)
		}
	}
	if relayed["alert"] != true || relayed["from"] != "worker" || relayed["signal"] != "SIGSYS" || relayed["job"] != "j1" {
		t.Errorf("relayed alert %v: want alert=true from=worker (never what the file claims) signal and job kept", relayed)
	}
	if left, _ := os.ReadDir(f.layout.Courier("claimed")); len(left) != 0 {
		t.Errorf("%d files left claimed", len(left))
	}
}

// A response_url is a secret: whoever has one can post to the channel.
const secretReplyPath = "/commands/T0/1234567890/SECRETresponseURLtoken"

// TestReplyErrorsKeepURLsSecret: a failed post to a response_url is
// logged (reply_failed) with the host and the cause, never the URL.
func TestReplyErrorsKeepURLsSecret(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	f := newFixture(t)
	f.s.opt.ResponseURLAllowed = func(string) bool { return true }
	f.s.notifier.Attempts = 1
	id := job.NewID()
	f.s.reply(context.Background(), &job.Result{V: job.Version, Job: id, Status: job.StatusStarted},
		&reply.Info{URL: srv.URL + secretReplyPath, Created: time.Now().Unix(), Video: "dQw4w9WgXcQ", Format: job.FormatBest})
	log := f.log.String()
	if !strings.Contains(log, `"event":"reply_failed"`) || !strings.Contains(log, "post to "+host+": ") {
		t.Fatalf("no reply_failed event naming the host %s:\n%s", host, log)
	}
	if strings.Contains(log, "SECRET") {
		t.Errorf("a failed reply logged the secret URL:\n%s", log)
	}
}

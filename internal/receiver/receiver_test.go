package receiver

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/spool"
	"github.com/ytkeep/ytkeep/internal/testutil"
)

type syncBuffer = testutil.SyncBuffer

type fakeSlack = testutil.Slack

func newFakeSlack(tb testing.TB) *fakeSlack { return testutil.NewSlack(tb) }

type fixture struct {
	s      *Service
	layout spool.Layout
	log    *syncBuffer
	slack  *fakeSlack
	now    time.Time
}

func newFixture(t *testing.T) *fixture { return newFixtureWith(t, nil) }

// newFixtureWith makes a fixture whose options mut changes first.
func newFixtureWith(t *testing.T, mut func(*Options)) *fixture {
	root := t.TempDir()
	f := &fixture{layout: spool.Layout{Root: filepath.Join(root, "spool")}, log: &syncBuffer{}, slack: newFakeSlack(t), now: time.Now()}
	if err := f.layout.CreateSingleUser(filepath.Join(root, "dl")); err != nil {
		t.Fatal(err)
	}
	opt := Options{
		SpoolDir: f.layout.Root, Command: "/ytkeep", AppID: "A0YTKEEP01",
		AllowedTeams: []string{"T1"}, AllowedChannels: []string{"C1"}, AllowedUsers: []string{"U1", "U2"},
		ResponseURLAllowed: func(u string) bool { return strings.HasPrefix(u, f.slack.URL()+"/") },
		PerUserPerMinute:   3,
		Now:                func() time.Time { return f.now },
		Logger:             slog.New(slog.NewJSONHandler(f.log, nil)),
	}
	if mut != nil {
		mut(&opt)
	}
	var err error
	f.s, err = New(opt)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) cmd(text string) *slackreq.Command {
	return &slackreq.Command{TeamID: "T1", ChannelID: "C1", UserID: "U1", Command: "/ytkeep", Text: text,
		ResponseURL: f.slack.URL() + "/r/1", APIAppID: "A0YTKEEP01"}
}

func (f *fixture) incoming(t *testing.T) []*job.Job {
	t.Helper()
	ents, _ := os.ReadDir(f.layout.Incoming())
	var jobs []*job.Job
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(f.layout.Incoming(), e.Name()))
		j, err := job.ParseJob(b)
		if err != nil {
			t.Fatalf("receiver wrote an invalid job: %v", err)
		}
		jobs = append(jobs, j)
	}
	return jobs
}

func TestHandle(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		mut    func(c *slackreq.Command)
		want   string
		reason string
		alert  bool
	}{
		{"other team", func(c *slackreq.Command) { c.TeamID = "T2" }, "workspace is not allowed", "unauthorized_team", true},
		{"other user", func(c *slackreq.Command) { c.UserID = "U9" }, "not allowed to use /ytkeep", "unauthorized_user", true},
		{"other channel", func(c *slackreq.Command) { c.ChannelID = "C9" }, "not enabled in this channel", "unauthorized_channel", true},
		{"other command", func(c *slackreq.Command) { c.Command = "/other" }, "only answers /ytkeep", "unknown_command", true},
		{"lowercase id", func(c *slackreq.Command) { c.UserID = "u1" }, "malformed", "malformed_ids", true},
		{"malformed enterprise", func(c *slackreq.Command) { c.EnterpriseID = "e1" }, "malformed", "malformed_ids", true},
		{"foreign response_url", func(c *slackreq.Command) { c.ResponseURL = "https://attacker.example/x" }, "malformed", "response_url", true},
		{"bad url", func(c *slackreq.Command) { c.Text = "https://youtu.be/short" }, "valid video ID", "bad_url_id", false},
		{"bad format", func(c *slackreq.Command) { c.Text = "https://youtu.be/dQw4w9WgXcQ 8k" }, "Unknown format", "bad_format", false},
		{"other app", func(c *slackreq.Command) { c.APIAppID = "A0OTHER01" }, "sent to another Slack app", "other_app", true},
		{"no app", func(c *slackreq.Command) { c.APIAppID = "" }, "sent to another Slack app", "other_app", true},
		{"double escaped", func(c *slackreq.Command) { c.Text = "https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;amp;t=30s" }, "query string is malformed", "bad_url_syntax", false},
		{"user mention", func(c *slackreq.Command) { c.Text = "<@U123ABC|bob> https://youtu.be/dQw4w9WgXcQ" }, "mentions a person", "mention", false},
		{"channel mention after the link", func(c *slackreq.Command) { c.Text = "https://youtu.be/dQw4w9WgXcQ <#C123ABC|general>" }, "mentions a person", "mention", false},
		{"plain mention", func(c *slackreq.Command) { c.Text = "@bob" }, "mentions a person", "mention", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A receiver each: a second refusal of a reason in a
			// workspace within minutes is counted, not alerted (signedGates).
			f := newFixture(t)
			c := f.cmd("https://youtu.be/dQw4w9WgXcQ")
			tt.mut(c)
			before := len(f.log.String())
			if got := f.s.Handle(c); !strings.Contains(got, tt.want) {
				t.Fatalf("reply %q, want %q", got, tt.want)
			}
			logged := f.log.String()[before:]
			if !strings.Contains(logged, `"reason":"`+tt.reason+`"`) {
				t.Fatalf("no audit event for %s: %s", tt.reason, logged)
			}
			if alert := strings.Contains(logged, `"alert":true`); alert != tt.alert {
				t.Fatalf("alert %v, want %v: %s", alert, tt.alert, logged)
			}
			if n := len(f.incoming(t)); n != 0 {
				t.Fatalf("refusals queued %d jobs", n)
			}
		})
	}
	reply := f.s.Handle(f.cmd("<https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;list=PL1|My video title> 480P"))
	jobs := f.incoming(t)
	if len(jobs) != 1 || jobs[0].Video != "dQw4w9WgXcQ" || jobs[0].Format != job.Format480 || !strings.Contains(reply, jobs[0].ID) {
		t.Fatalf("reply %q, jobs %+v", reply, jobs)
	}
	// Results go to the response_url, which Slack accepts for 30
	// minutes: the user is told.
	if !strings.Contains(reply, "if that is within 30 minutes") {
		t.Errorf("the reply does not say a result after 30 minutes is not posted here: %q", reply)
	}
	// The job file carries the response_url only sealed.
	b, _ := os.ReadFile(filepath.Join(f.layout.Incoming(), jobs[0].FileName()))
	if bytes.Contains(b, []byte("http")) || bytes.Contains(b, []byte("/r/1")) {
		t.Fatalf("job file reveals the response_url: %s", b)
	}
	info, err := f.s.sealer.Open(jobs[0].ID, jobs[0].Reply)
	if err != nil || info.URL != f.slack.URL()+"/r/1" || info.Video != "dQw4w9WgXcQ" || info.Format != job.Format480 {
		t.Fatalf("token opens to %+v, %v", info, err)
	}
	// The key: the receiver's, for the courier's group (the setgid
	// directory's) to read, no one else.
	st, err := os.Stat(f.layout.Receiver("reply.key"))
	if err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("reply key: %v %v", st, err)
	}
}

func TestRateLimit(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 3; i++ {
		if r := f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ")); !strings.HasPrefix(r, "Queued") {
			t.Fatalf("job %d: %q", i, r)
		}
	}
	if r := f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ")); !strings.Contains(r, "please wait") {
		t.Fatalf("fourth job in a minute: %q", r)
	}
	c := f.cmd("https://youtu.be/dQw4w9WgXcQ")
	c.UserID = "U2"
	if r := f.s.Handle(c); !strings.HasPrefix(r, "Queued") {
		t.Fatalf("another user is limited too: %q", r)
	}
	f.now = f.now.Add(61 * time.Second)
	if r := f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ")); !strings.HasPrefix(r, "Queued") {
		t.Fatalf("after a minute: %q", r)
	}
}

// TestSlackForms: the texts Slack sends for a link with a second query
// parameter, with the command's escaping option on and off, each queued
// as a job for the right video.
func TestSlackForms(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) { o.PerUserPerMinute = 100 })
	for _, tt := range []struct{ text, video string }{
		{"https://www.youtube.com/watch?v=aaaaaaaaaa1&amp;t=30s", "aaaaaaaaaa1"},
		{"<https://www.youtube.com/watch?v=aaaaaaaaaa2&amp;t=30s>", "aaaaaaaaaa2"},
		{"<https://www.youtube.com/watch?v=aaaaaaaaaa3&amp;list=PL1&amp;index=2|www.youtube.com/watch?v=aaaaaaaaaa3&amp;list=PL1> 720p", "aaaaaaaaaa3"},
		{"<http://youtu.be/aaaaaaaaaa4?si=x&amp;t=1|youtu.be/aaaaaaaaaa4?si=x&amp;t=1> audio", "aaaaaaaaaa4"},
		{"https://m.youtube.com/watch?feature=share&amp;v=aaaaaaaaaa5 360p", "aaaaaaaaaa5"},
		{"https://www.youtube.com/shorts/aaaaaaaaaa6?feature=share&amp;si=x", "aaaaaaaaaa6"},
	} {
		if r := f.s.Handle(f.cmd(tt.text)); !strings.HasPrefix(r, "Queued `"+tt.video+"`") {
			t.Errorf("%q: %q", tt.text, r)
		}
	}
	n := 0
	for _, j := range f.incoming(t) {
		if strings.HasPrefix(j.Video, "aaaaaaaaaa") {
			n++
		}
	}
	if n != 6 {
		t.Fatalf("%d jobs queued, want 6", n)
	}
}

// TestAppAndEnterprise: with no app_id any app's command is answered;
// with allowed_enterprises only those organizations' commands are, and a
// workspace in none is refused.
func TestAppAndEnterprise(t *testing.T) {
	t.Run("any app", func(t *testing.T) {
		f := newFixtureWith(t, func(o *Options) { o.AppID = "" })
		c := f.cmd("https://youtu.be/dQw4w9WgXcQ")
		c.APIAppID = "A0OTHER01"
		if r := f.s.Handle(c); !strings.HasPrefix(r, "Queued") {
			t.Fatalf("%q", r)
		}
	})
	f := newFixtureWith(t, func(o *Options) { o.AllowedEnterprises = []string{"E0GRIDORG"} })
	for _, tt := range []struct {
		name, enterprise, want string
	}{
		{"allowed organization", "E0GRIDORG", "Queued"},
		{"other organization", "E0OTHER", "organization is not allowed"},
		{"no organization", "", "organization is not allowed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := f
			if tt.want != "Queued" {
				// A receiver each: see TestHandle.
				f = newFixtureWith(t, func(o *Options) { o.AllowedEnterprises = []string{"E0GRIDORG"} })
			}
			c := f.cmd("https://youtu.be/dQw4w9WgXcQ")
			c.EnterpriseID, c.IsEnterpriseInstall = tt.enterprise, true
			before := len(f.log.String())
			if r := f.s.Handle(c); !strings.Contains(r, tt.want) {
				t.Fatalf("reply %q, want %q", r, tt.want)
			}
			logged := f.log.String()[before:]
			if tt.want != "Queued" && (!strings.Contains(logged, `"reason":"unauthorized_enterprise"`) || !strings.Contains(logged, `"alert":true`)) {
				t.Fatalf("no alert for the organization: %s", logged)
			}
		})
	}
	if n := len(f.incoming(t)); n != 1 {
		t.Fatalf("%d jobs, want the allowed organization's one", n)
	}
}

// TestRateLimitSurvivesRestart: the per-user limit is kept on disk; a
// receiver started since (a crash, or a restart to reset the limit)
// still refuses the user until the minute has passed. Without the rate
// log the restarted receiver accepts the fourth job.
func TestRateLimitSurvivesRestart(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 3; i++ {
		if r := f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ")); !strings.HasPrefix(r, "Queued") {
			t.Fatalf("job %d: %q", i, r)
		}
	}
	restart := func() {
		t.Helper()
		s, err := New(f.s.opt)
		if err != nil {
			t.Fatal(err)
		}
		f.s = s
	}
	restart()
	if r := f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ")); !strings.Contains(r, "please wait") {
		t.Fatalf("fourth job in a minute, after a restart: %q", r)
	}
	c := f.cmd("https://youtu.be/dQw4w9WgXcQ")
	c.UserID = "U2"
	if r := f.s.Handle(c); !strings.HasPrefix(r, "Queued") {
		t.Fatalf("another user: %q", r)
	}
	// Twice in the same minute: the second start appends to what the
	// first wrote (U2's job), it does not start the file over.
	restart()
	for range 2 {
		if r := f.s.Handle(c); !strings.HasPrefix(r, "Queued") {
			t.Fatalf("U2's second and third: %q", r)
		}
	}
	restart()
	if r := f.s.Handle(c); !strings.Contains(r, "please wait") {
		t.Fatalf("U2's fourth after two restarts in a minute: %q", r)
	}
	f.now = f.now.Add(61 * time.Second)
	restart()
	if r := f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ")); !strings.HasPrefix(r, "Queued") {
		t.Fatalf("a minute later, after a restart: %q", r)
	}
	// A torn or foreign line is skipped, not fatal.
	for _, name := range []string{"rate.0.log", "rate.1.log"} {
		fd, err := os.OpenFile(filepath.Join(f.layout.Receiver(""), name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		fd.WriteString("12 ../../etc\nnot a line\n17")
		fd.Close()
	}
	restart()
	if r := f.s.Handle(c); !strings.HasPrefix(r, "Queued") {
		t.Fatalf("after a torn log: %q", r)
	}
}

// TestRateLogBounded: each append goes to its minute's file, which the
// minute's first append empties, so the log holds at most two minutes of
// entries however long the receiver runs (and no append rewrites it).
func TestRateLogBounded(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) { o.PerUserPerMinute = 1 << 20 })
	for i := range 20000 {
		f.now = f.now.Add(100 * time.Millisecond) // 600 a minute
		if !f.s.allowRate(fmt.Sprintf("U%06d", i%500)) {
			t.Fatal("refused")
		}
	}
	var total int64
	for _, name := range []string{"rate.0.log", "rate.1.log"} {
		st, err := os.Stat(filepath.Join(f.layout.Receiver(""), name))
		if err != nil {
			t.Fatal(err)
		}
		total += st.Size()
	}
	// Two minutes at 600 a minute, 19 bytes each.
	if total > 2*600*19 {
		t.Fatalf("the rate log holds %d bytes, more than two minutes of entries", total)
	}
}

// TestRateLogCannotStopTheReceiver: a log that cannot be written (a full
// disk, here a directory in its place) does not stop the receiver; the
// limit holds in memory and the problem is logged.
func TestRateLogCannotStopTheReceiver(t *testing.T) {
	f := newFixture(t)
	m := f.now.Unix() / 60
	for _, name := range []string{"rate.0.log", "rate.1.log"} {
		if err := os.Mkdir(filepath.Join(f.layout.Receiver(""), name), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New(f.s.opt)
	if err != nil {
		t.Fatalf("New with an unusable rate log: %v", err)
	}
	for i := range 4 {
		r := s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ"))
		if (i < 3) != strings.HasPrefix(r, "Queued") {
			t.Fatalf("job %d (minute %d): %q", i, m, r)
		}
	}
	if !strings.Contains(f.log.String(), "the per-user limit's log") || !strings.Contains(f.log.String(), "couldn't record an accepted job") {
		t.Errorf("the problems were not logged:\n%s", f.log.String())
	}
}

// TestHelp: /ytkeep help (or the bare command) tells what it does, how,
// and where the user will hear back: the channel for 30 minutes, or, when
// the courier has a bot token, their DM.
func TestHelp(t *testing.T) {
	for _, dm := range []bool{false, true} {
		f := newFixtureWith(t, func(o *Options) { o.StatusInDM = dm })
		for _, text := range []string{"help", "", "HELP"} {
			r := f.s.Handle(f.cmd(text))
			want := "in this channel, for 30 minutes"
			if dm {
				want = "in our direct messages"
			}
			if !strings.Contains(r, "Usage: `/ytkeep <YouTube link> [best|audio|1080p|720p|480p|360p]`") || !strings.Contains(r, want) {
				t.Errorf("help (dm %v, %q): %q, want the usage and %q", dm, text, r, want)
			}
		}
		if n := len(f.incoming(t)); n != 0 {
			t.Errorf("help queued %d jobs", n)
		}
	}
}

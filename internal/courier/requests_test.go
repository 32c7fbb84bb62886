package courier

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/notify"
	"github.com/ytkeep/ytkeep/internal/reply"
	"github.com/ytkeep/ytkeep/internal/testbed"
)

// request is a request as the receiver queues it and the worker forwards
// it, from user, answered on the fake Slack's path.
// The job named, if any, is target.
func (f *fixture) request(t testing.TB, kind job.RequestKind, user, path string, target ...string) *job.Request {
	t.Helper()
	return f.requestTo(t, kind, user, f.slack.URL()+path, target...)
}

// requestTo is request, answered on responseURL.
func (f *fixture) requestTo(t testing.TB, kind job.RequestKind, user, responseURL string, target ...string) *job.Request {
	t.Helper()
	q := &job.Request{V: job.Version, ID: job.NewID(), Kind: kind, Team: "T1", User: user, Channel: "C1", Created: f.now.Unix()}
	if len(target) > 0 {
		q.Job = target[0]
	}
	tok, err := f.sealer.Seal(q.ID, reply.Info{URL: responseURL, Created: q.Created, User: user, Request: true,
		Kind: string(kind), Job: q.Job})
	if err != nil {
		t.Fatal(err)
	}
	q.Reply = tok
	return q
}

// writeRequest plays the worker forwarding q.
func (f *fixture) writeRequest(t testing.TB, q *job.Request) {
	t.Helper()
	b, err := q.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	f.put(t, q.FileName(), b)
}

// waitQuarantined waits until the quarantine holds n files.
func waitQuarantined(t *testing.T, f *fixture, n int) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		q, _ := os.ReadDir(f.layout.Courier("quarantine"))
		if len(q) == n {
			return
		}
		if len(q) > n || time.Now().After(deadline) {
			t.Fatalf("quarantine holds %d files, want %d\n%s", len(q), n, f.log.String())
		}
	}
}

// waitLogCount waits until the log holds part n times; more is an
// error.
func waitLogCount(t *testing.T, f *fixture, part string, n int) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		c := strings.Count(f.log.String(), part)
		if c == n {
			return
		}
		if c > n || time.Now().After(deadline) {
			t.Fatalf("%d log lines with %s, want %d\n%s", c, part, n, f.log.String())
		}
	}
}

// TestRequestTokens: a request is answered only with a token the
// receiver sealed for that request, as a request, for the record's user;
// a request's token is no result's. Each hostile record (what a
// compromised worker can write with the tokens it holds) is quarantined
// with an alert and answered by nothing; an honest request is answered
// once, and its replay refused.
func TestRequestTokens(t *testing.T) {
	f := newFixture(t)
	f.runResults(t)
	other, err := reply.New(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	j := f.job(t, "dQw4w9WgXcQ", job.Format720, "/r/job")
	hostile := map[string]func() (string, []byte){
		"forged request token": func() (string, []byte) {
			q := f.request(t, job.RequestList, requester, "/r/forged")
			q.Reply, _ = other.Seal(q.ID, reply.Info{URL: f.slack.URL() + "/r/forged", Created: q.Created, User: requester, Request: true})
			b, _ := q.Marshal()
			return q.FileName(), b
		},
		"request token moved to another request": func() (string, []byte) {
			q := f.request(t, job.RequestList, requester, "/r/moved")
			q.ID = job.NewID()
			b, _ := q.Marshal()
			return q.FileName(), b
		},
		"job token used as a request": func() (string, []byte) {
			// The worker holds every job's token: as a list request
			// named after the job, it opens, but is a job's.
			q := &job.Request{V: job.Version, ID: j.ID, Kind: job.RequestList, Team: "T1", User: requester, Channel: "C1", Created: j.Created, Reply: j.Reply}
			b, _ := q.Marshal()
			return q.FileName(), b
		},
		"request token used as a result": func() (string, []byte) {
			q := f.request(t, job.RequestList, requester, "/r/asresult")
			r := &job.Result{V: job.Version, Job: q.ID, Status: job.StatusFailed, Class: job.ClassTimeout, Reply: q.Reply}
			b, _ := r.Marshal()
			return r.FileName(), b
		},
		"request token used as progress": func() (string, []byte) {
			q := f.request(t, job.RequestList, requester, "/r/asprogress")
			p := &job.Progress{V: job.Version, Job: q.ID, Seq: 1, Percent: 5, Reply: q.Reply}
			b, _ := p.Marshal()
			return p.FileName(), b
		},
		"a list made a send": func() (string, []byte) {
			q := f.request(t, job.RequestList, requester, "/r/listsend")
			q.Kind, q.Job = job.RequestSend, j.ID
			b, _ := q.Marshal()
			return q.FileName(), b
		},
		"another job named": func() (string, []byte) {
			q := f.request(t, job.RequestSend, requester, "/r/otherjob", j.ID)
			q.Job = job.NewID()
			b, _ := q.Marshal()
			return q.FileName(), b
		},
		"user other than the sealed one": func() (string, []byte) {
			q := f.request(t, job.RequestList, requester, "/r/otheruser")
			q.User = "U0VICTIM01"
			b, _ := q.Marshal()
			return q.FileName(), b
		},
		"cancel the worker did not act on": func() (string, []byte) {
			q := f.request(t, job.RequestCancel, requester, "/r/noop", j.ID)
			b, _ := q.Marshal()
			return q.FileName(), b
		},
	}
	n := 0
	for what, record := range hostile {
		name, data := record()
		f.put(t, name, data)
		n++
		waitQuarantined(t, f, n)
		// The file is moved before its alert is logged: wait for both.
		waitLogCount(t, f, `"event":"quarantined","alert":true`, n)
		if p := f.slack.Posts(); len(p) != 0 {
			t.Fatalf("%s: answered: %q", what, p)
		}
	}

	// The honest request: answered once, on its response_url.
	q := f.request(t, job.RequestList, requester, "/r/list")
	f.writeRequest(t, q)
	posts := waitPosts(t, f.slack, 1)
	if !strings.HasPrefix(posts[0], "/r/list You have no jobs yet.") {
		t.Errorf("answer %q", posts[0])
	}
	f.writeRequest(t, q)
	waitLog(t, f, `"reason":"request_replayed"`)
	if p := f.slack.Posts(); len(p) != 1 {
		t.Errorf("a replayed request was answered again: %q", p)
	}
}

// TestListAndHistory: every result the courier accepts updates its
// requester's history (the user of the token): list answers with the
// user's last 10 jobs, newest first, each with its ID, state and the
// inert title, and the history outlives the courier.
func TestListAndHistory(t *testing.T) {
	f := newFixture(t)
	f.runResults(t)
	var ids []string
	for i := range 12 {
		f.now = f.now.Add(time.Minute)
		j := f.job(t, "dQw4w9WgXcQ", job.Format720, fmt.Sprintf("/r/%d", i))
		ids = append(ids, j.ID)
		var r *job.Result
		switch i % 4 {
		case 0:
			r = j.Result(job.StatusDone, job.ClassNone)
			r.Title, r.Size, r.File = "<!here> *bold* https://evil.example", 3<<20, "dQw4w9WgXcQ-720p.mp4"
		case 1:
			r = j.Result(job.StatusFailed, job.ClassUnavailable)
		case 2:
			r = j.Result(job.StatusCancelled, job.ClassNone)
		default:
			r = j.Result(job.StatusStarted, job.ClassNone)
		}
		f.writeResult(t, r)
		waitPosts(t, f.slack, i+1)
	}
	// Another user's job: not in the requester's list.
	stranger := &job.Job{V: job.Version, ID: job.NewID(), Video: "aaaaaaaaaaa", Format: job.FormatAudio, Team: "T1", User: "U0OTHER001", Channel: "C1", Created: f.now.Unix()}
	stranger.Reply, _ = f.sealer.Seal(stranger.ID, reply.Info{URL: f.slack.URL() + "/r/s", Created: stranger.Created, Video: stranger.Video, Format: stranger.Format, User: stranger.User})
	f.writeResult(t, stranger.Result(job.StatusStarted, job.ClassNone))
	waitPosts(t, f.slack, 13)

	list := func(path string) string {
		t.Helper()
		before := len(f.slack.Posts())
		f.writeRequest(t, f.request(t, job.RequestList, requester, path))
		return strings.TrimPrefix(waitPosts(t, f.slack, before+1)[before], path+" ")
	}
	check := func(got string) {
		t.Helper()
		lines := strings.Split(got, "\n")
		if len(lines) != 12 || lines[0] != "Your last 10 jobs, newest first:" {
			t.Fatalf("list:\n%s", got)
		}
		for k := range 10 {
			id := ids[11-k] // newest first; the two oldest forgotten
			if !strings.HasPrefix(lines[1+k], "• `"+id+"` ") {
				t.Errorf("line %d %q, want job %s", 1+k, lines[1+k], id)
			}
		}
		want := map[int]string{11: ":hourglass_flowing_sand: downloading", 10: ":no_entry_sign: cancelled", 9: ":x: failed", 8: ":white_check_mark: saved"}
		for i, w := range want {
			if !strings.Contains(lines[12-i], w) {
				t.Errorf("job %d: %q, want %q", i, lines[12-i], w)
			}
		}
		if !strings.Contains(lines[4], "*&lt;!here&gt; ∗bold∗ https:\u200b//evil.\u200bexample* (`dQw4w9WgXcQ`, 720p): `dQw4w9WgXcQ-720p.mp4`, 3.0 MiB") {
			t.Errorf("saved job's line, title not inert or no file: %q", lines[4])
		}
		if strings.Contains(got, stranger.ID) || strings.Contains(got, "aaaaaaaaaaa") {
			t.Errorf("another user's job is listed:\n%s", got)
		}
		if !strings.Contains(lines[11], "/ytkeep cancel <job>") {
			t.Errorf("no hint to cancel: %q", lines[11])
		}
	}
	check(list("/r/list1"))

	// A new courier (a restart) reads the same history.
	next, err := New(f.s.opt, notify.NewNotifier())
	if err != nil {
		t.Fatal(err)
	}
	f.s = next
	f.runResults(t)
	check(list("/r/list2"))

	// A record replayed late never moves a job back: a saved job stays
	// saved, with its file.
	saved := ids[8]
	r := &job.Result{V: job.Version, Job: saved, Status: job.StatusStarted}
	h, _ := f.s.userHistory(requester)
	for _, e := range h.Jobs {
		if e.Job == saved {
			tok, _ := f.sealer.Seal(saved, reply.Info{URL: f.slack.URL() + "/r/x", Created: e.Created, Video: e.Video, Format: e.Format, User: requester})
			r.Reply = tok
		}
	}
	f.writeResult(t, r)
	waitLog(t, f, `"reason":"late"`)
	if got := list("/r/list3"); !strings.Contains(strings.Split(got, "\n")[4], ":white_check_mark: saved") {
		t.Errorf("a late record changed a saved job:\n%s", got)
	}
	// Bounded: the history file holds 10 jobs.
	data, err := os.ReadFile(filepath.Join(f.layout.Courier("history"), requester+".json"))
	if err != nil || len(data) > maxHistorySize {
		t.Fatalf("history file: %d bytes, %v", len(data), err)
	}
	if h, err := parseHistory(data); err != nil || len(h.Jobs) != historyLen {
		t.Errorf("history file: %v, %d jobs", err, len(h.Jobs))
	}
}

// TestHistoryRefusesBadFiles: a history file that is not what the
// courier writes is not used (the list starts afresh); the user's ID is
// checked before it names a file.
func TestHistoryRefusesBadFiles(t *testing.T) {
	f := newFixture(t)
	bad := map[string]string{
		"unknown field": `{"v":1,"jobs":[],"x":1}`,
		"wrong file":    `{"v":1,"jobs":[{"job":"aaaaaaaaaaaaaaaaaaaaaaaaaa","video":"dQw4w9WgXcQ","format":"720p","state":"saved","file":"aaaaaaaaaaa-720p.mp4","size":1,"created":1700000000,"updated":1700000000}]}`,
		"bad state":     `{"v":1,"jobs":[{"job":"aaaaaaaaaaaaaaaaaaaaaaaaaa","video":"dQw4w9WgXcQ","format":"720p","state":"pwned","created":1700000000,"updated":1700000000}]}`,
		"trailing data": `{"v":1,"jobs":[]}{}`,
	}
	for what, data := range bad {
		if _, err := parseHistory([]byte(data)); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
	for _, user := range []string{"../etc", "", "U0TEST0001/x", "u0lower"} {
		if _, err := f.s.userHistory(user); err == nil {
			t.Errorf("history of %q: accepted", user)
		}
	}
}

// TestRequestsNeverDelayResults: a request whose response_url does not
// answer holds up no result: the results go on while its answer hangs,
// and once the queue of requests is full, the next request is dropped
// with an event. Had requests been answered in line, the result would
// wait for the hanging post (the test's deadline).
func TestRequestsNeverDelayResults(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	f := newFixture(t)
	f.s.opt.ResponseURLAllowed = func(u string) bool {
		return strings.HasPrefix(u, f.slack.URL()+"/") || strings.HasPrefix(u, slow.URL+"/")
	}
	f.s.notifier.Client.Timeout = 0 // the post hangs until the test ends
	f.runResults(t)

	f.writeRequest(t, f.requestTo(t, job.RequestList, requester, slow.URL+"/r/slow"))
	select {
	case <-arrived:
	case <-time.After(time.Minute):
		t.Fatal("the request was not answered")
	}
	j := f.job(t, "dQw4w9WgXcQ", job.Format720, "/r/1")
	f.writeResult(t, j.Result(job.StatusFailed, job.ClassTimeout))
	if p := waitPosts(t, f.slack, 1); p[0] != "/r/1 :x: Couldn't keep `dQw4w9WgXcQ` (720p): "+job.ClassTimeout.Describe()+"." {
		t.Errorf("posts %q", p)
	}
	// The queue fills behind the hanging answer; the next is dropped.
	for i := range requestQueue + 1 {
		f.writeRequest(t, f.request(t, job.RequestList, requester, fmt.Sprintf("/r/q%d", i)))
	}
	waitLog(t, f, `"reason":"request_dropped","code":"queue_full"`)
	if c := strings.Count(f.log.String(), `"reason":"request_dropped"`); c != 1 {
		t.Errorf("%d requests dropped, want 1 past the queue of %d", c, requestQueue)
	}
}

// TestAnswersInTheDM: with a bot token, the answer to a list or a send
// goes into the DM of the user the request's token names, and its
// response_url (which a compromised receiver may have sealed as its own,
// for any user) gets only a note, without any job; a cancel's answer,
// about what was asked, stays on the response_url.
func TestAnswersInTheDM(t *testing.T) {
	f, api := botFixture(t)
	f.runResults(t)
	j := f.job(t, "dQw4w9WgXcQ", job.Format720, "/r/1")
	f.writeResult(t, j.Result(job.StatusFailed, job.ClassTimeout))
	waitDM(t, api, ":x: Couldn't keep")

	f.now = time.Now()
	f.writeRequest(t, f.request(t, job.RequestList, requester, "/r/attacker"))
	if p := waitPosts(t, f.slack, 1); p[0] != "/r/attacker "+dmNote {
		t.Errorf("the response_url got %q, want only %q", p[0], dmNote)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := api.WaitFor(ctx, func(a *testbed.WebAPI) bool { return len(dm(a)) == 2 }); err != nil {
		t.Fatalf("no answer in the DM: %+v", dm(api))
	}
	if m := dm(api)[1]; !strings.HasPrefix(m.Text, "Your last job:") || !strings.Contains(m.Text, j.ID) {
		t.Errorf("the DM's answer %q, want the list with job %s", m.Text, j.ID)
	}
	for _, p := range f.slack.Posts() {
		if strings.Contains(p, j.ID) || strings.Contains(p, "dQw4w9WgXcQ") {
			t.Errorf("a job went to the response_url: %q", p)
		}
	}

	q := f.request(t, job.RequestCancel, requester, "/r/cancel", j.ID)
	q.Outcome = job.OutcomeNotFound
	f.writeRequest(t, q)
	if p := waitPosts(t, f.slack, 2); !strings.HasPrefix(p[1], "/r/cancel Nothing to cancel: job `"+j.ID+"`") {
		t.Errorf("the cancel's answer %q", p[1])
	}
	if n := len(dm(api)); n != 2 {
		t.Errorf("%d DM messages after the cancel, want 2", n)
	}
}

// TestHistoryKeepsJobsUnderWay: a job still downloading is not forgotten
// for ten newer ones that ended; so its place in the queue, arriving
// late, is dropped as late and does not take its status message back.
// A new job when every entry is under way is not kept, and said so.
func TestHistoryKeepsJobsUnderWay(t *testing.T) {
	f, api := botFixture(t)
	f.runResults(t)
	f.now = time.Now().Add(-time.Minute) // the long download's command came first
	long := f.job(t, "dQw4w9WgXcQ", job.Format720, "/r/long")
	f.writeResult(t, long.Result(job.StatusStarted, job.ClassNone))
	waitDM(t, api, ":hourglass_flowing_sand: Downloading")
	f.now = time.Now()
	for range historyLen {
		j := f.job(t, "aaaaaaaaaaa", job.FormatAudio, "/r/x")
		info, _ := f.sealer.Open(j.ID, j.Reply)
		if !f.s.recordHistory(j.Result(job.StatusFailed, job.ClassUnavailable), info) {
			t.Fatal("a new job's end was not kept")
		}
	}
	h, _ := f.s.userHistory(requester)
	if !slices.ContainsFunc(h.Jobs, func(e historyEntry) bool { return e.Job == long.ID }) || len(h.Jobs) != historyLen {
		t.Errorf("the job under way was forgotten: %+v", h.Jobs)
	}
	q := long.Result(job.StatusQueued, job.ClassNone)
	q.Position = 2
	f.writeResult(t, q)
	waitLog(t, f, `"job":"`+long.ID+`","status":"queued","reason":"update_dropped","code":"late"`)
	if m := dm(api); len(m) != 1 || !strings.HasPrefix(m[0].Text, ":hourglass_flowing_sand: Downloading") {
		t.Errorf("the late record changed the status message: %+v", m)
	}

	// Every entry under way: a new job is not kept.
	g := newFixture(t)
	for range historyLen {
		j := g.job(t, "aaaaaaaaaaa", job.FormatAudio, "/r/x")
		info, _ := g.sealer.Open(j.ID, j.Reply)
		g.s.recordHistory(j.Result(job.StatusStarted, job.ClassNone), info)
	}
	g.now = g.now.Add(time.Minute)
	j := g.job(t, "aaaaaaaaaaa", job.FormatAudio, "/r/x")
	info, _ := g.sealer.Open(j.ID, j.Reply)
	if g.s.recordHistory(j.Result(job.StatusQueued, job.ClassNone), info) {
		t.Error("a job that was not kept is reported as moved forward")
	}
	h, _ = g.s.userHistory(requester)
	if len(h.Jobs) != historyLen || slices.ContainsFunc(h.Jobs, func(e historyEntry) bool { return e.Job == j.ID }) {
		t.Errorf("history %+v", h.Jobs)
	}
}

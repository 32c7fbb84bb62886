package courier

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/notify"
	"github.com/ytkeep/ytkeep/internal/reply"
	"github.com/ytkeep/ytkeep/internal/slackapi"
	"github.com/ytkeep/ytkeep/internal/testbed"
)

// uploadFixture is a courier with a bot token that uploads files of up
// to maxUpload bytes, quota bytes a day per user.
func uploadFixture(t testing.TB, maxUpload, quota int64) (*fixture, *testbed.WebAPI) {
	t.Helper()
	return botFixtureWith(t, func(o *Options) {
		o.DownloadsDir = filepath.Join(filepath.Dir(o.SpoolDir), "dl")
		o.MaxUploadBytes, o.UploadQuotaBytes = maxUpload, quota
	})
}

// downloads is the fixture's downloads directory.
func (f *fixture) downloads() string { return filepath.Join(filepath.Dir(f.layout.Root), "dl") }

// store plays the worker storing name, size random bytes; it returns
// their SHA-256 in hex.
func (f *fixture) store(t testing.TB, name string, size int) string {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	if err := os.WriteFile(filepath.Join(f.downloads(), name), b, 0o640); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sendJob is a job of "/ytkeep <link> send": its token says Send.
func (f *fixture) sendJob(t testing.TB, video string, format job.Format, path string) *job.Job {
	t.Helper()
	j := f.job(t, video, format, path)
	tok, err := f.sealer.Seal(j.ID, reply.Info{URL: f.slack.URL() + path, Created: j.Created, Video: video, Format: format, User: j.User, Send: true})
	if err != nil {
		t.Fatal(err)
	}
	j.Reply = tok
	return j
}

// done is j's result: saved as file, of size bytes.
func done(j *job.Job, file string, size int) *job.Result {
	r := j.Result(job.StatusDone, job.ClassNone)
	r.Title, r.File, r.Size = "A clip", file, int64(size)
	return r
}

// waitDMText waits for a message in the requester's DM containing part.
func waitDMText(t *testing.T, api *testbed.WebAPI, part string) testbed.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var found testbed.Msg
	err := api.WaitFor(ctx, func(a *testbed.WebAPI) bool {
		for _, m := range dm(a) {
			if strings.Contains(m.Text, part) {
				found = m
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("no message with %q in the requester's DM: %+v", part, dm(api))
	}
	return found
}

// waitFiles waits until n files are shared, and returns them.
func waitFiles(t *testing.T, api *testbed.WebAPI, n int) []testbed.File {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := api.WaitFor(ctx, func(a *testbed.WebAPI) bool {
		c := 0
		for _, f := range a.Files() {
			if f.Completed {
				c++
			}
		}
		return c == n
	})
	if err != nil {
		t.Fatalf("files %+v, want %d shared", api.Files(), n)
	}
	return api.Files()
}

// TestSendAfterFinal: a job of "/ytkeep <link> send" gets its file in
// the requester's DM once its final message is there: the bytes of the
// stored file, under its name. A job without Send gets none.
func TestSendAfterFinal(t *testing.T) {
	f, api := uploadFixture(t, 10_000, 100_000)
	f.runResults(t)
	sum := f.store(t, "dQw4w9WgXcQ-720p.mp4", 4000)
	f.store(t, "dQw4w9WgXcQ-best.mp4", 4000)
	plain := f.job(t, "dQw4w9WgXcQ", job.FormatBest, "/r/0")
	f.writeResult(t, done(plain, "dQw4w9WgXcQ-best.mp4", 4000))
	waitDMText(t, api, ":white_check_mark: Saved *A clip*")

	j := f.sendJob(t, "dQw4w9WgXcQ", job.Format720, "/r/1")
	f.writeResult(t, done(j, "dQw4w9WgXcQ-720p.mp4", 4000))
	files := waitFiles(t, api, 1)
	if fl := files[0]; fl.Name != "dQw4w9WgXcQ-720p.mp4" || fl.SHA256 != sum || fl.Size != 4000 || fl.Channel != api.DMOf(requester) || fl.Title != "A clip" {
		t.Errorf("uploaded %+v, want the stored file's bytes in the requester's DM", fl)
	}
	waitLog(t, f, `"event":"uploaded"`)
	if !strings.Contains(f.log.String(), `"user":"`+requester+`","file":"dQw4w9WgXcQ-720p.mp4","size":4000`) {
		t.Errorf("no upload event with the user, the file and its size:\n%s", f.log.String())
	}
	// The saved message offers the file.
	if m := waitDMText(t, api, "dQw4w9WgXcQ-720p.mp4"); len(buttons(t, m.Blocks)) != 1 || buttons(t, m.Blocks)[0].ActionID != job.ActionSend {
		t.Errorf("no send button on the saved message: %s", m.Blocks)
	}
	if v := api.Violations(); len(v) != 0 {
		t.Errorf("Slack's limits broken: %q", v)
	}
}

// TestUploadCap: a file over the cap is not uploaded (nor offered); the
// DM says why, its size, the cap and its name on the server.
func TestUploadCap(t *testing.T) {
	f, api := uploadFixture(t, 100_000, 1_000_000)
	f.runResults(t)
	f.store(t, "dQw4w9WgXcQ-720p.mp4", 120_000)
	j := f.sendJob(t, "dQw4w9WgXcQ", job.Format720, "/r/1")
	f.writeResult(t, done(j, "dQw4w9WgXcQ-720p.mp4", 120_000))
	m := waitDMText(t, api, "over this server's upload limit")
	for _, part := range []string{"`dQw4w9WgXcQ-720p.mp4` is 0.12 MB, over this server's upload limit of 0.10 MB", "stays on the server as `dQw4w9WgXcQ-720p.mp4`"} {
		if !strings.Contains(m.Text, part) {
			t.Errorf("refusal %q does not say %q", m.Text, part)
		}
	}
	waitLog(t, f, `"reason":"over_cap"`)
	if len(api.Files()) != 0 {
		t.Errorf("uploaded over the cap: %+v", api.Files())
	}
	if saved := waitDMText(t, api, ":white_check_mark: Saved"); len(buttons(t, saved.Blocks)) != 0 {
		t.Errorf("a file over the cap is offered: %s", saved.Blocks)
	}
}

// TestUploadQuota: uploads are counted per user and UTC day before they
// go, on disk: after a restart, what is left of the day is still what
// it was, and a file over it is refused with a message that says so.
func TestUploadQuota(t *testing.T) {
	// A clock fixed at the start: on the real one, a run across 00:00
	// UTC would start a new quota day in the middle.
	start := time.Now()
	f, api := botFixtureWith(t, func(o *Options) {
		o.DownloadsDir = filepath.Join(filepath.Dir(o.SpoolDir), "dl")
		o.MaxUploadBytes, o.UploadQuotaBytes = 100_000, 70_000
		o.Now = func() time.Time { return start }
	})
	f.runResults(t)
	f.store(t, "dQw4w9WgXcQ-720p.mp4", 40_000)
	f.store(t, "dQw4w9WgXcQ-480p.mp4", 40_000)
	f.writeResult(t, done(f.sendJob(t, "dQw4w9WgXcQ", job.Format720, "/r/1"), "dQw4w9WgXcQ-720p.mp4", 40_000))
	waitFiles(t, api, 1)
	waitLog(t, f, `"event":"uploaded"`)

	// A new courier: the day's count survives it.
	next, err := New(f.s.opt, notify.NewNotifier())
	if err != nil {
		t.Fatal(err)
	}
	f.s = next
	f.runResults(t)
	f.writeResult(t, done(f.sendJob(t, "dQw4w9WgXcQ", job.Format480, "/r/2"), "dQw4w9WgXcQ-480p.mp4", 40_000))
	m := waitDMText(t, api, "upload quota")
	for _, part := range []string{"`dQw4w9WgXcQ-480p.mp4` is 0.04 MB, more than the 0.03 MB left of your upload quota today (0.07 MB a day, UTC)", "stays on the server"} {
		if !strings.Contains(m.Text, part) {
			t.Errorf("refusal %q does not say %q", m.Text, part)
		}
	}
	waitLog(t, f, `"reason":"over_quota"`)
	if n := len(api.Files()); n != 1 {
		t.Errorf("%d uploads, want 1 within the quota", n)
	}
	var q quotaRecord
	data, _ := os.ReadFile(filepath.Join(f.layout.Courier("quota"), requester+".json"))
	if json.Unmarshal(data, &q) != nil || q.Bytes != 40_000 || q.Day != start.UTC().Format(time.DateOnly) {
		t.Errorf("quota record %s, want 40000 bytes today", data)
	}
}

// TestStoredFileChecks: the courier uploads only the stored file itself:
// not a symlink (to another user's file, the key…), not a hard link,
// not a file of another name or size than its job's result gives, not a
// FIFO. Each refusal is an alert and nothing is uploaded.
func TestStoredFileChecks(t *testing.T) {
	f, api := uploadFixture(t, 10_000, 1_000_000)
	f.runResults(t)
	dl := f.downloads()
	f.store(t, "secret-elsewhere", 100)
	cases := []struct {
		name      string
		make      func(path string)
		file      string
		size      int
		wantAlert string
	}{
		{"symlink", func(p string) { os.Symlink(filepath.Join(dl, "secret-elsewhere"), p) }, "dQw4w9WgXcQ-720p.mp4", 100, `"why":"symlink"`},
		{"hard link", func(p string) { os.Link(filepath.Join(dl, "secret-elsewhere"), p) }, "dQw4w9WgXcQ-480p.mp4", 100, `"why":"2 links"`},
		{"wrong size", func(p string) { os.WriteFile(p, make([]byte, 50), 0o640) }, "dQw4w9WgXcQ-360p.mp4", 100, `"why":"50 bytes, not the 100 its job gives"`},
		{"fifo", func(p string) { syscall.Mkfifo(p, 0o640) }, "dQw4w9WgXcQ-audio.m4a", 100, `"why":"not a regular file"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.make(filepath.Join(dl, c.file))
			n, _ := job.ParseName(c.file)
			j := f.sendJob(t, n.Video, n.Format, "/r/"+c.name)
			f.writeResult(t, done(j, c.file, c.size))
			waitLog(t, f, c.wantAlert)
			waitDMText(t, api, "`"+c.file+"` failed a check")
		})
	}
	// A name that is not the job's stored file (the result's is checked
	// before; a send request's comes from the history), each a file that
	// passes every other check.
	f.store(t, "notes.txt", 100)
	f.store(t, "dQw4w9WgXcQ-1080p.mp4", 100)
	text, queued := f.s.prepareUpload(requester, storedFile{job: job.NewID(), video: "dQw4w9WgXcQ", format: job.Format720, name: "notes.txt", size: 100}, "test")
	if queued || !strings.Contains(text, "failed a check") {
		t.Errorf("a file of another name: %q, queued %v", text, queued)
	}
	text, queued = f.s.prepareUpload(requester, storedFile{job: job.NewID(), video: "aaaaaaaaaaa", format: job.Format1080, name: "dQw4w9WgXcQ-1080p.mp4", size: 100}, "test")
	if queued || !strings.Contains(text, "failed a check") {
		t.Errorf("another video's file: %q, queued %v", text, queued)
	}
	if c := strings.Count(f.log.String(), `"event":"upload_refused","alert":true`); c != len(cases)+2 {
		t.Errorf("%d alerts, want %d", c, len(cases)+2)
	}
	// Each case's notice says it was refused before it was queued.
	if fs := api.Files(); len(fs) != 0 {
		t.Errorf("uploaded: %+v", fs)
	}
}

// TestSendRequest: "/ytkeep send <job>" (or the button) uploads a saved
// job of the token's user into that user's DM, and answers there (the
// request's response_url gets a note without it); a job that is not the
// user's (a compromised worker may name any job in the record: only the
// token is the receiver's) or not saved is refused, and nothing is
// uploaded.
func TestSendRequest(t *testing.T) {
	f, api := uploadFixture(t, 10_000, 1_000_000)
	f.runResults(t)
	sum := f.store(t, "dQw4w9WgXcQ-720p.mp4", 3000)
	j := f.job(t, "dQw4w9WgXcQ", job.Format720, "/r/1")
	f.writeResult(t, done(j, "dQw4w9WgXcQ-720p.mp4", 3000))
	waitDMText(t, api, ":white_check_mark: Saved")
	// Another user's saved job.
	f.store(t, "aaaaaaaaaaa-best.mp4", 3000)
	other := &job.Job{V: job.Version, ID: job.NewID(), Video: "aaaaaaaaaaa", Format: job.FormatBest, Team: "T1", User: "U0OTHER001", Channel: "C1", Created: time.Now().Unix()}
	other.Reply, _ = f.sealer.Seal(other.ID, reply.Info{URL: f.slack.URL() + "/r/o", Created: other.Created, Video: other.Video, Format: other.Format, User: other.User})
	f.writeResult(t, done(other, "aaaaaaaaaaa-best.mp4", 3000))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := api.WaitFor(ctx, func(a *testbed.WebAPI) bool { return len(a.Messages(a.DMOf(other.User))) == 1 }); err != nil {
		t.Fatal(err)
	}

	// ask sends a send request and returns the answer in the DM.
	ask := func(jobID, path string) string {
		t.Helper()
		f.now = time.Now()
		q := f.request(t, job.RequestSend, requester, path, jobID)
		before, dmBefore := len(f.slack.Posts()), len(dm(api))
		f.writeRequest(t, q)
		if got := waitPosts(t, f.slack, before+1)[before]; got != path+" "+dmNote {
			t.Errorf("the response_url got %q, want only the note", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := api.WaitFor(ctx, func(a *testbed.WebAPI) bool { return len(dm(a)) > dmBefore }); err != nil {
			t.Fatalf("no answer in the DM: %+v", dm(api))
		}
		return dm(api)[dmBefore].Text
	}
	if got := ask(other.ID, "/r/steal"); !strings.Contains(got, "is not one of your last 10 jobs") {
		t.Errorf("another user's job: %q", got)
	}
	if got := ask(job.NewID(), "/r/none"); !strings.Contains(got, "is not one of your last 10 jobs") {
		t.Errorf("an unknown job: %q", got)
	}
	if got := ask(j.ID, "/r/mine"); got != "Sending `dQw4w9WgXcQ-720p.mp4` (3000 bytes) into our direct messages." {
		t.Errorf("answer %q", got)
	}
	files := waitFiles(t, api, 1)
	if files[0].SHA256 != sum || files[0].Channel != api.DMOf(requester) {
		t.Errorf("uploaded %+v, want the requester's file in their DM", files[0])
	}
	if n := len(api.Files()); n != 1 {
		t.Errorf("%d uploads, want 1", n)
	}
}

// button is what a test looks at in a Block Kit button.
type button struct{ ActionID, Value, Style, Text, Confirm string }

// buttons returns the buttons of the actions blocks in blocks (JSON).
func buttons(t *testing.T, blocks []byte) []button {
	t.Helper()
	var bs []struct {
		Type     string `json:"type"`
		Elements []struct {
			Type     string          `json:"type"`
			ActionID string          `json:"action_id"`
			Value    string          `json:"value"`
			Style    string          `json:"style"`
			Text     json.RawMessage `json:"text"` // a context element's is a string
			Confirm  *struct {
				Style string `json:"style"`
			} `json:"confirm"`
		} `json:"elements"`
	}
	if err := json.Unmarshal(blocks, &bs); err != nil {
		t.Fatalf("blocks %s: %v", blocks, err)
	}
	var out []button
	for _, b := range bs {
		if b.Type != "actions" {
			continue
		}
		for _, e := range b.Elements {
			var text struct{ Text string }
			json.Unmarshal(e.Text, &text)
			got := button{ActionID: e.ActionID, Value: e.Value, Style: e.Style, Text: text.Text}
			if e.Confirm != nil {
				got.Confirm = e.Confirm.Style
			}
			out = append(out, got)
		}
	}
	return out
}

// TestStatusButtons: the status message has Cancel (with a confirmation)
// while its job waits or downloads, "Send me the file" once saved if the
// file may be uploaded, and neither after a failure or a cancel; each
// carries the job's ID and the action_id the receiver knows.
func TestStatusButtons(t *testing.T) {
	info := &reply.Info{Video: "dQw4w9WgXcQ", Format: job.Format720, User: requester}
	id := job.NewID()
	r := func(st job.Status, size int64) *job.Result {
		res := &job.Result{V: job.Version, Job: id, Status: st, Size: size}
		if st == job.StatusQueued {
			res.Position = 3
		}
		if st == job.StatusDone {
			res.File = "dQw4w9WgXcQ-720p.mp4"
		}
		return res
	}
	cancelButton := button{ActionID: "ytkeep_cancel", Value: id, Style: "danger", Text: "Cancel", Confirm: "danger"}
	sendButton := button{ActionID: "ytkeep_send", Value: id, Text: "Send me the file"}
	tests := []struct {
		name      string
		r         *job.Result
		maxUpload int64
		want      button // zero: no buttons
	}{
		{"queued", r(job.StatusQueued, 0), 1000, cancelButton},
		{"downloading", r(job.StatusStarted, 0), 1000, cancelButton},
		{"saved", r(job.StatusDone, 1000), 1000, sendButton},
		{"saved, uploads off", r(job.StatusDone, 1000), 0, button{}},
		{"saved, over the cap", r(job.StatusDone, 1001), 1000, button{}},
		{"failed", &job.Result{V: job.Version, Job: id, Status: job.StatusFailed, Class: job.ClassTimeout}, 1000, button{}},
		{"cancelled", r(job.StatusCancelled, 0), 1000, button{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(statusMessage(info, tt.r, nil, tt.maxUpload).Blocks)
			if err != nil {
				t.Fatal(err)
			}
			got := buttons(t, b)
			if tt.want == (button{}) {
				if len(got) != 0 {
					t.Errorf("buttons %+v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("buttons %+v, want %+v", got, tt.want)
			}
		})
	}
	if job.ActionCancel != "ytkeep_cancel" || job.ActionSend != "ytkeep_send" {
		t.Errorf("the shared action_ids changed: %q, %q", job.ActionCancel, job.ActionSend)
	}
}

// TestQueuedAndCancelled: with a bot token, a queued job's status
// message says its place (with Cancel), and a cancel is its final
// message; a queued record that comes after the download started is
// dropped. Without the token, the place is not posted (the
// response_url's 5 posts) and the cancel is.
func TestQueuedAndCancelled(t *testing.T) {
	f, api := botFixture(t)
	f.runResults(t)
	j := f.job(t, "dQw4w9WgXcQ", job.Format720, "/r/1")
	q := j.Result(job.StatusQueued, job.ClassNone)
	q.Position = 3
	f.writeResult(t, q)
	m := waitDM(t, api, ":clock3: Queued `dQw4w9WgXcQ` (720p) — 2 ahead of it.")
	if b := buttons(t, m.Blocks); len(b) != 1 || b[0].ActionID != job.ActionCancel || b[0].Value != j.ID {
		t.Errorf("no Cancel button while queued: %s", m.Blocks)
	}
	f.writeResult(t, j.Result(job.StatusStarted, job.ClassNone))
	waitDM(t, api, ":hourglass_flowing_sand: Downloading")
	q.Position = 1
	f.writeResult(t, q) // late
	waitLog(t, f, `"status":"queued","reason":"update_dropped","code":"late"`)
	f.writeResult(t, j.Result(job.StatusCancelled, job.ClassNone))
	m = waitDM(t, api, ":no_entry_sign: Cancelled. `dQw4w9WgXcQ` (720p) was not kept.")
	if len(m.Texts) != 3 || len(buttons(t, m.Blocks)) != 0 {
		t.Errorf("the status message went %q (blocks %s), want queued, downloading, cancelled, without buttons at the end", m.Texts, m.Blocks)
	}

	g := newFixture(t)
	g.runResults(t)
	k := g.job(t, "dQw4w9WgXcQ", job.Format720, "/r/2")
	q = k.Result(job.StatusQueued, job.ClassNone)
	q.Position = 1
	g.writeResult(t, q)
	g.writeResult(t, k.Result(job.StatusCancelled, job.ClassNone))
	posts := waitPosts(t, g.slack, 1)
	if len(posts) != 1 || posts[0] != "/r/2 :no_entry_sign: Cancelled. `dQw4w9WgXcQ` (720p) was not kept." {
		t.Errorf("response_url posts %q, want the cancel alone", posts)
	}
}

// TestUploadNoticesNotBehindUploads: what is said about an upload (here
// "too many uploads are waiting", and a file over the cap) goes into
// the DM on a lane of its own: with the upload queue full and nothing
// uploading, both are told. In the upload queue, the first would have
// been dropped and the second would have waited for the uploads.
func TestUploadNoticesNotBehindUploads(t *testing.T) {
	f, api := uploadFixture(t, 10_000, 1_000_000)
	// The lane of requests and notices, and no uploader: every upload
	// queued stays queued.
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	go func() { f.s.runMessages(ctx); close(ended) }()
	t.Cleanup(func() {
		cancel()
		<-ended
		for len(f.s.uploads) > 0 {
			(<-f.s.uploads).file.Close()
		}
	})
	f.store(t, "dQw4w9WgXcQ-720p.mp4", 3000)
	for i := range uploadQueue {
		if text, queued := f.s.prepareUpload(requester, storedFile{job: job.NewID(), video: "dQw4w9WgXcQ", format: job.Format720, name: "dQw4w9WgXcQ-720p.mp4", size: 3000}, "test"); !queued {
			t.Fatalf("upload %d: %q", i, text)
		}
	}
	send := func(file string, size int) {
		t.Helper()
		n, _ := job.ParseName(file)
		j := f.sendJob(t, n.Video, n.Format, "/r/x")
		info, err := f.sealer.Open(j.ID, j.Reply)
		if err != nil {
			t.Fatal(err)
		}
		f.s.sendAfterFinal(done(j, file, size), info)
	}
	send("dQw4w9WgXcQ-720p.mp4", 3000)
	waitDMText(t, api, "Too many uploads are waiting")
	waitLog(t, f, `"reason":"busy"`)
	send("dQw4w9WgXcQ-480p.mp4", 20_000)
	waitDMText(t, api, "over this server's upload limit")
	if strings.Contains(f.log.String(), "upload_notice_dropped") {
		t.Errorf("a notice was dropped:\n%s", f.log.String())
	}
}

// TestUploadDeadline: a 429 whose Retry-After is an hour holds the
// client's next upload for that hour; the upload task's deadline fails
// that upload instead (its quota given back: Slack got none of it), so
// the uploader is not parked.
func TestUploadDeadline(t *testing.T) {
	for _, size := range []int64{1, 1 << 30} {
		if d := uploadDeadline(size); d < 10*time.Minute || d <= slackapi.UploadTimeout(size) {
			t.Errorf("deadline of %d bytes: %v", size, d)
		}
	}
	f, api := uploadFixture(t, 10_000, 100_000)
	// The first upload must reach Slack and get its 429, however slow
	// the machine: a minute. The second waits out the Retry-After (an
	// hour) in the client, so its 200 ms end it whatever the speed.
	var tasks atomic.Int32
	f.s.uploadDeadline = func(int64) time.Duration {
		if tasks.Add(1) == 1 {
			return time.Minute
		}
		return 200 * time.Millisecond
	}
	f.runResults(t)
	f.store(t, "dQw4w9WgXcQ-720p.mp4", 3000)
	f.store(t, "dQw4w9WgXcQ-480p.mp4", 3000)
	api.RateLimit("files.getUploadURLExternal", 1, time.Hour)
	f.writeResult(t, done(f.sendJob(t, "dQw4w9WgXcQ", job.Format720, "/r/1"), "dQw4w9WgXcQ-720p.mp4", 3000))
	waitLog(t, f, `"event":"upload_failed"`)
	f.writeResult(t, done(f.sendJob(t, "dQw4w9WgXcQ", job.Format480, "/r/2"), "dQw4w9WgXcQ-480p.mp4", 3000))
	waitLog(t, f, `"file":"dQw4w9WgXcQ-480p.mp4","size":3000,"code":"`+slackapi.CodeClientRateLimited+`"`)
	waitDMText(t, api, "Slack did not take `dQw4w9WgXcQ-480p.mp4`")
	var q quotaRecord
	data, _ := os.ReadFile(filepath.Join(f.layout.Courier("quota"), requester+".json"))
	if json.Unmarshal(data, &q) != nil || q.Bytes != 0 {
		t.Errorf("quota record %s, want both uploads given back", data)
	}
}

// TestNoRepeatUploads: one job's file goes to a user once: a send asked
// again while it is queued or going (a double click), or soon after it
// went ("<link> send", then the button), is refused, with an event.
func TestNoRepeatUploads(t *testing.T) {
	f, api := uploadFixture(t, 10_000, 1_000_000)
	f.runResults(t)
	f.store(t, "dQw4w9WgXcQ-720p.mp4", 3000)
	j := f.sendJob(t, "dQw4w9WgXcQ", job.Format720, "/r/1")
	f.writeResult(t, done(j, "dQw4w9WgXcQ-720p.mp4", 3000))
	waitFiles(t, api, 1)
	waitLog(t, f, `"event":"uploaded"`)
	f.now = time.Now()
	f.writeRequest(t, f.request(t, job.RequestSend, requester, "/r/again", j.ID))
	waitDMText(t, api, "`dQw4w9WgXcQ-720p.mp4` was already sent into our direct messages")
	// A double click on another saved job: two requests, one upload.
	f.store(t, "dQw4w9WgXcQ-480p.mp4", 3000)
	k := f.job(t, "dQw4w9WgXcQ", job.Format480, "/r/2")
	f.writeResult(t, done(k, "dQw4w9WgXcQ-480p.mp4", 3000))
	waitDMText(t, api, "as `dQw4w9WgXcQ-480p.mp4`")
	f.writeRequest(t, f.request(t, job.RequestSend, requester, "/r/click1", k.ID))
	f.writeRequest(t, f.request(t, job.RequestSend, requester, "/r/click2", k.ID))
	waitLogCount(t, f, `"reason":"repeat"`, 2)
	waitFiles(t, api, 2)
	waitLogCount(t, f, `"event":"uploaded"`, 2)
	if n := len(api.Files()); n != 2 {
		t.Errorf("%d uploads, want one per job", n)
	}

	// After resendAfter, the file may go again; a failed upload at once.
	var s sends
	k1, now := sendKey{requester, "j1"}, time.Now()
	if busy, _ := s.begin(k1, now); busy {
		t.Fatal("busy at first")
	}
	if busy, _ := s.begin(k1, now); !busy {
		t.Error("not busy while queued")
	}
	s.end(k1, now)
	if _, sent := s.begin(k1, now.Add(resendAfter-time.Second)); !sent.Equal(now) {
		t.Error("not refused just after it went")
	}
	if busy, sent := s.begin(k1, now.Add(resendAfter)); busy || !sent.IsZero() {
		t.Error("refused after resendAfter")
	}
	s.end(k1, time.Time{})
	if busy, sent := s.begin(k1, now); busy || !sent.IsZero() {
		t.Error("refused after a failure")
	}
}

// TestSendButtonWithinQuota: "Send me the file" is offered only for a
// file within the cap and within a whole day's quota: a larger one can
// never be sent.
func TestSendButtonWithinQuota(t *testing.T) {
	f, api := uploadFixture(t, 100_000, 50_000)
	f.runResults(t)
	big := f.job(t, "dQw4w9WgXcQ", job.Format720, "/r/1")
	f.writeResult(t, done(big, "dQw4w9WgXcQ-720p.mp4", 60_000))
	m := waitDMText(t, api, "as `dQw4w9WgXcQ-720p.mp4`")
	if b := buttons(t, m.Blocks); len(b) != 0 {
		t.Errorf("a file over the day's quota is offered: %+v", b)
	}
	small := f.job(t, "dQw4w9WgXcQ", job.Format480, "/r/2")
	f.writeResult(t, done(small, "dQw4w9WgXcQ-480p.mp4", 40_000))
	m = waitDMText(t, api, "as `dQw4w9WgXcQ-480p.mp4`")
	if b := buttons(t, m.Blocks); len(b) != 1 || b[0].ActionID != job.ActionSend {
		t.Errorf("a file within the quota is not offered: %+v", b)
	}
}

// TestQuotaSweepUnderLock: the sweep deletes a user's old record under
// the user's lock, so an upload counted between its look and its delete
// is not deleted with it.
func TestQuotaSweepUnderLock(t *testing.T) {
	f, _ := uploadFixture(t, 10_000, 100_000)
	if _, _, ok, err := f.s.reserveQuota(requester, 100); !ok || err != nil {
		t.Fatal(ok, err)
	}
	path := filepath.Join(f.layout.Courier("quota"), requester+".json")
	old := time.Now().Add(-72 * time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	// An upload counted just as the sweep finds the record old.
	f.s.quotaSweepHook = func(user string) {
		if _, _, ok, err := f.s.reserveQuota(user, 200); !ok || err != nil {
			t.Error(ok, err)
		}
	}
	f.s.sweepQuota()
	var q quotaRecord
	data, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(data, &q) != nil || q.Bytes != 300 {
		t.Errorf("quota record %s, %v; want the 300 bytes counted", data, err)
	}
	// An old record nobody touches is swept.
	f.s.quotaSweepHook = nil
	os.Chtimes(path, old, old)
	f.s.sweepQuota()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("an old record was kept: %v", err)
	}
}

// TestBadFileAlertsOnce: a stored file in a state that fails the checks
// for good (a hard link an admin made as a backup) raises one alert;
// asking for it again makes events, not more alerts.
func TestBadFileAlertsOnce(t *testing.T) {
	f, _ := uploadFixture(t, 10_000, 1_000_000)
	f.store(t, "dQw4w9WgXcQ-720p.mp4", 100)
	if err := os.Link(filepath.Join(f.downloads(), "dQw4w9WgXcQ-720p.mp4"), filepath.Join(f.downloads(), "backup")); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		text, queued := f.s.prepareUpload(requester, storedFile{job: job.NewID(), video: "dQw4w9WgXcQ", format: job.Format720, name: "dQw4w9WgXcQ-720p.mp4", size: 100}, "test")
		if queued || !strings.Contains(text, "failed a check") {
			t.Fatalf("%q, queued %v", text, queued)
		}
	}
	log := f.log.String()
	if a, e := strings.Count(log, `"event":"upload_refused","alert":true`), strings.Count(log, `"reason":"bad_file","why":"2 links"`); a != 1 || e != 5 {
		t.Errorf("%d alerts and %d refusals, want 1 alert and 5 refusals:\n%s", a, e, log)
	}
}

package worker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/confine"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/sandbox"
	"github.com/ytkeep/ytkeep/internal/spool"
	"github.com/ytkeep/ytkeep/internal/testutil"
	"github.com/ytkeep/ytkeep/internal/ytdlp"
)

type syncBuffer = testutil.SyncBuffer

func TestMain(m *testing.M) {
	if len(os.Args) == 2 {
		switch os.Args[1] {
		case sandbox.ServerFlag:
			sandbox.ServerMain()
		case sandbox.ChildFlag:
			sandbox.ChildMain()
		}
	}
	os.Exit(m.Run())
}

type harness struct {
	t      *testing.T
	layout spool.Layout
	dl     string
	out    *spool.Outbox
	log    *syncBuffer
	w      *Worker
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T, tweak func(*Options, *time.Duration)) *harness {
	return newHarnessLayers(t, tweak, true)
}

// newHarnessLayers can run the launcher without Landlock, to test the
// worker's own checks on what Landlock would otherwise prevent.
func newHarnessLayers(t *testing.T, tweak func(*Options, *time.Duration), landlock bool) *harness {
	t.Helper()
	return newHarnessIn(t, t.TempDir(), tweak, landlock)
}

// newHarnessIn is newHarnessLayers with the spool and downloads in root.
func newHarnessIn(t *testing.T, root string, tweak func(*Options, *time.Duration), landlock bool) *harness {
	t.Helper()
	h := &harness{t: t, layout: spool.Layout{Root: filepath.Join(root, "spool")}, dl: filepath.Join(root, "downloads"), log: &syncBuffer{}}
	if err := h.layout.CreateSingleUser(h.dl); err != nil {
		t.Fatal(err)
	}
	fake, _ := filepath.Abs("testdata/fake-yt-dlp")
	self, _ := os.Executable()
	opt := Options{SpoolDir: h.layout.Root, DownloadsDir: h.dl, Concurrency: 2, MaxFileBytes: 1 << 20, MaxAttempts: 3,
		Logger: slog.New(slog.NewJSONHandler(h.log, nil))}
	timeout := 10 * time.Second
	if tweak != nil {
		tweak(&opt, &timeout)
	}
	launcher, err := sandbox.StartLauncher(self, &sandbox.Setup{
		Rules: *confine.DownloaderRules(confine.DownloaderParams{JobRoot: h.layout.Work(),
			ExtraExec: []string{filepath.Dir(fake)}}),
		Landlock: landlock && confine.LandlockABI() >= confine.MinLandlockABI,
		Seccomp:  true,
		Download: &sandbox.DownloadConfig{YtDlp: fake, FFmpeg: "/usr/bin/ffmpeg", MaxBytes: opt.MaxFileBytes,
			SocketTimeout: 5, Timeout: timeout,
			Limits: sandbox.Limits{CPUSeconds: 60, FileBytes: uint64(opt.MaxFileBytes) + 64<<20, OpenFiles: 256, Processes: 512, DataBytes: 2 << 30}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { launcher.Close() })
	opt.Launcher = launcher
	if h.w, err = New(opt); err != nil {
		t.Fatal(err)
	}
	tmp, _ := spool.OpenDir(h.layout.Receiver("tmp"))
	in, _ := spool.OpenDir(h.layout.Incoming())
	h.out = &spool.Outbox{Tmp: tmp, Dst: in, GID: -1}
	return h
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.w.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("worker stopped with %v", err)
	}
	if h.t.Failed() {
		h.t.Logf("worker log:\n%s", h.log.String())
	}
}

// token stands in for the receiver's sealed reply token, opaque here.
const token = "b3BhcXVlLXJlcGx5LXRva2VuLWZvci13b3JrZXItdGVzdHMteHh4eA"

func newJob(video string, f job.Format) *job.Job {
	return &job.Job{V: 1, ID: job.NewID(), Video: video, Format: f, Team: "T1", User: "U1", Channel: "C1", Created: time.Now().Unix(), Reply: token}
}

func (h *harness) submit(j *job.Job) {
	h.t.Helper()
	b, err := j.Marshal()
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.out.Put(j.FileName(), b); err != nil {
		h.t.Fatal(err)
	}
}

// result waits for the final result of job id.
func (h *harness) result(id string) *job.Result {
	h.t.Helper()
	deadline := time.Now().Add(6 * time.Minute) // a hang guard, never a timing assertion: past the 5-min download limits some tests set
	for time.Now().Before(deadline) {
		for _, st := range []job.Status{job.StatusDone, job.StatusFailed, job.StatusCancelled} {
			b, err := os.ReadFile(filepath.Join(h.layout.Results(), id+"."+string(st)+".result"))
			if err == nil {
				r, err := job.ParseResult(b)
				if err != nil {
					h.t.Fatalf("worker wrote an invalid result: %v", err)
				}
				return r
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("no final result for %s", id)
	return nil
}

func TestDownloadAndStore(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	j := newJob("okokokokok1", job.Format720)
	h.submit(j)
	r := h.result(j.ID)
	if r.Status != job.StatusDone || r.File != "okokokokok1-720p.mp4" || r.Size != 11 || r.Title != "Fake title" || r.Duration != 5 || r.Cached || r.Reply != token {
		t.Fatalf("result %+v", r)
	}
	if _, err := os.Stat(filepath.Join(h.layout.Results(), j.ID+".started.result")); err != nil {
		t.Error("no started result")
	}
	b, err := os.ReadFile(filepath.Join(h.dl, "okokokokok1-720p.mp4"))
	if err != nil || string(b) != "media bytes" {
		t.Fatalf("stored %q, %v", b, err)
	}
	// A repeat is answered from the store without running yt-dlp.
	j2 := newJob("okokokokok1", job.Format720)
	h.submit(j2)
	if r := h.result(j2.ID); r.Status != job.StatusDone || !r.Cached || r.Title != "Fake title" {
		t.Fatalf("repeat %+v", r)
	}
	if _, err := os.Stat(filepath.Join(h.layout.Results(), j2.ID+".started.result")); err == nil {
		t.Error("a cached answer announced a download")
	}
	// Work and temporary directories are cleaned (the claimed file goes
	// right after the result is written, so give it a moment).
	for _, d := range []string{h.layout.Work(), h.layout.Worker("claimed"), filepath.Join(h.dl, ".tmp")} {
		deadline := time.Now().Add(time.Minute)
		for {
			ents, _ := os.ReadDir(d)
			if len(ents) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s holds %d entries", d, len(ents))
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestJobDirLent: the downloader's group may write a job directory while
// its download runs (0770; the worker takes it back, 0700, before it
// reads the output, which no test observes).
func TestJobDirLent(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	j := newJob("lendmodeAAA", job.FormatBest)
	h.submit(j)
	if r := h.result(j.ID); r.Status != job.StatusDone {
		t.Fatalf("result %+v", r)
	}
	b, err := os.ReadFile(filepath.Join(h.dl, "lendmodeAAA-best.mp4"))
	if err != nil || strings.TrimSpace(string(b)) != "770" {
		t.Fatalf("the download saw its directory with mode %q (%v), want 770", b, err)
	}
}

// TestHostileDownloaderOutput runs a misbehaving downloader twice: with
// every layer, where Landlock and the child jail's seccomp filter refuse
// to let it create links and FIFOs at all, and without Landlock, where the
// jail alone refuses them (the launcher's tidy is TestTidy, the worker's
// own open check TestStoreRefuses). Either way nothing is stored.
func TestHostileDownloaderOutput(t *testing.T) {
	for _, landlock := range []bool{true, false} {
		t.Run(fmt.Sprintf("landlock=%v", landlock), func(t *testing.T) {
			hostileOutput(t, landlock, job.ClassBadOutput)
		})
	}
}

// TestStoreRefuses: the worker stores only a plain file with one name,
// whatever the downloader left (the last of three layers, behind
// Landlock and the launcher's tidy).
func TestStoreRefuses(t *testing.T) {
	h := newHarness(t, nil)
	dirPath := t.TempDir()
	os.WriteFile(filepath.Join(dirPath, "target"), []byte("secret"), 0o600)
	os.Symlink(filepath.Join(dirPath, "target"), filepath.Join(dirPath, "link.mp4"))
	unix.Mkfifo(filepath.Join(dirPath, "fifo.mp4"), 0o600)
	os.Link(filepath.Join(dirPath, "target"), filepath.Join(dirPath, "hard.mp4"))
	dir, err := os.Open(dirPath)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	for _, name := range []string{"link.mp4", "fifo.mp4", "hard.mp4"} {
		j := newJob("storeAAAAAA", job.FormatBest)
		if s, err := h.w.store(dir, name, j, "mp4", &ytdlp.Meta{}); err == nil {
			t.Errorf("%s was stored as %+v", name, s)
		}
	}
	if ents, _ := os.ReadDir(h.dl); len(ents) > 1 { // .tmp
		t.Errorf("downloads holds %d entries", len(ents))
	}
}

func hostileOutput(t *testing.T, landlock bool, refused job.Class) {
	// Every case but the sleep one ends on its own: a time limit of
	// minutes, a hang guard a loaded machine cannot reach (filling the
	// disk budget, 66 MB under -race on two busy cores, took longer than
	// a few seconds on CI).
	h := newHarnessLayers(t, func(_ *Options, timeout *time.Duration) { *timeout = 5 * time.Minute }, landlock)
	h.start()
	tests := []struct {
		video string
		class job.Class
	}{
		{"symlinkAAAA", refused},
		{"hardlinkAAA", job.ClassBadOutput}, // no link is made: no output
		{"fifoAAAAAAA", refused},
		{"badextAAAAA", job.ClassBadOutput},
		{"twofilesAAA", job.ClassBadOutput},
		{"nothingAAAA", job.ClassBadOutput},
		{"bigfileAAAA", job.ClassTooLarge},
		{"toolargeAAA", job.ClassTooLarge},
		{"failAAAAAAA", job.ClassUnavailable},
		{"sleepAAAAAA", job.ClassTimeout},
		{"sigsysAAAAA", job.ClassSandbox},
		// 400 files of 1 MB, each under RLIMIT_FSIZE: over the budget of
		// 2 x 1 MiB + 64 MiB, stopped before the time limit.
		{"diskfillAAA", job.ClassTooLarge},
	}
	// The sleep case (30 s) has its own worker with a time limit of 2 s,
	// which it reaches however fast or slow the machine.
	hs := newHarnessLayers(t, func(_ *Options, timeout *time.Duration) { *timeout = 2 * time.Second }, landlock)
	hs.start()
	for _, tt := range tests {
		t.Run(tt.video, func(t *testing.T) {
			h := h
			if tt.video == "sleepAAAAAA" {
				h = hs
			}
			j := newJob(tt.video, job.FormatBest)
			h.submit(j)
			r := h.result(j.ID)
			if r.Status != job.StatusFailed || r.Class != tt.class {
				t.Fatalf("result %+v, want failed/%s", r, tt.class)
			}
			ents, _ := os.ReadDir(h.dl)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), tt.video) {
					t.Fatalf("%s stored despite failing", e.Name())
				}
			}
		})
	}
	if !strings.Contains(h.log.String(), `"event":"violation"`) {
		t.Error("SIGSYS in the child raised no violation alert")
	}
	if !strings.Contains(h.log.String(), `"reason":"disk_budget"`) {
		t.Error("filling the disk raised no alert")
	}
}

func TestHostileJobFiles(t *testing.T) {
	h := newHarness(t, nil)
	in := h.layout.Incoming()
	good := newJob("okokokokok2", job.FormatBest)
	goodBytes, _ := good.Marshal()
	mutate := func(old, new string) []byte {
		j := newJob("okokokokok2", job.FormatBest)
		b, _ := j.Marshal()
		return bytes.Replace(b, []byte(old), []byte(new), 1)
	}
	// validFor writes, outside incoming, a job file that would be accepted
	// under id, so that only the file checks can refuse the link to it.
	validFor := func(id string) string {
		j := newJob("okokokokok2", job.FormatBest)
		j.ID = id
		b, _ := j.Marshal()
		p := filepath.Join(h.layout.Root, id+".valid")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := map[string]func(id, path string) error{
		"symlink":   func(id, p string) error { return os.Symlink(validFor(id), p) },
		"hardlink":  func(id, p string) error { return os.Link(validFor(id), p) },
		"fifo":      func(id, p string) error { return syscall.Mkfifo(p, 0o644) },
		"directory": func(id, p string) error { return os.Mkdir(p, 0o755) },
		"oversize": func(id, p string) error {
			return os.WriteFile(p, bytes.Repeat([]byte(" "), job.MaxRecordSize+1), 0o644)
		},
		"unknown field": func(id, p string) error { return os.WriteFile(p, mutate(`{"v":1,`, `{"v":1,"exec":"id",`), 0o644) },
		"wrong version": func(id, p string) error { return os.WriteFile(p, mutate(`{"v":1,`, `{"v":9,`), 0o644) },
		"trailing":      func(id, p string) error { return os.WriteFile(p, append(mutate("", ""), "garbage"...), 0o644) },
		"non-canonical": func(id, p string) error { return os.WriteFile(p, mutate(`,"format"`, `, "format"`), 0o644) },
		"id mismatch":   func(id, p string) error { return os.WriteFile(p, goodBytes, 0o644) },
	}
	var ids []string
	for name, mk := range cases {
		id := job.NewID()
		ids = append(ids, id)
		if err := mk(id, filepath.Join(in, id+".job")); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(in, "not-a-job"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.start()
	// The worker keeps working: a valid job after the hostile ones is done.
	h.submit(good)
	if r := h.result(good.ID); r.Status != job.StatusDone {
		t.Fatalf("valid job after hostile ones: %+v", r)
	}
	// No hostile job was run or answered (it has no token we could trust).
	for _, id := range ids {
		if m, _ := filepath.Glob(filepath.Join(h.layout.Results(), id+".*")); len(m) > 0 {
			t.Errorf("hostile job %s produced results %v", id, m)
		}
	}
	// The hostile jobs are handled on the other slot too, perhaps after
	// the valid one: wait for their alerts (each logged after its move).
	h.waitLogN(`"event":"quarantined","alert":true`, len(cases)+1)
	q, _ := os.ReadDir(h.layout.Worker("quarantine"))
	if want := len(cases) + 1; len(q) != want {
		t.Errorf("quarantine holds %d files, want %d", len(q), want)
	}
	if n := strings.Count(h.log.String(), `"event":"quarantined","alert":true`); n != len(cases)+1 {
		t.Errorf("%d quarantine alerts, want %d", n, len(cases)+1)
	}
}

// TestWrongOwnerAsRoot plays the receiver and an intruder with numeric
// uids: a job file owned by anyone but the receiver is refused.
func TestWrongOwnerAsRoot(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run this test as root")
		}
		t.Skip("SKIPPED: needs root to create files owned by other uids")
	}
	h := newHarness(t, nil)
	const receiverUID, intruderUID = 61001, 61002
	if err := os.Chown(filepath.Join(h.layout.Root, "receiver"), receiverUID, receiverUID); err != nil {
		t.Fatal(err)
	}
	w, err := New(h.w.opt) // re-read the receiver's uid
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	honest, forged := newJob("okokokokok1", job.FormatBest), newJob("okokokokok1", job.FormatBest)
	for _, c := range []struct {
		j   *job.Job
		uid int
	}{{honest, receiverUID}, {forged, intruderUID}} {
		b, _ := c.j.Marshal()
		p := filepath.Join(h.layout.Incoming(), c.j.FileName())
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, c.uid, c.uid); err != nil {
			t.Fatal(err)
		}
	}
	h.start()
	if r := h.result(honest.ID); r.Status != job.StatusDone {
		t.Fatalf("job owned by the receiver: %+v", r)
	}
	if m, _ := filepath.Glob(filepath.Join(h.layout.Results(), forged.ID+".*")); len(m) > 0 {
		t.Fatalf("job owned by uid %d was answered: %v", intruderUID, m)
	}
	if q, _ := os.ReadDir(h.layout.Worker("quarantine")); len(q) != 1 {
		t.Fatalf("quarantine holds %d files, want the forged job", len(q))
	}
	if !strings.Contains(h.log.String(), "owned by uid 61002, want 61001") {
		t.Error("no alert naming the wrong owner")
	}
}

func TestRecovery(t *testing.T) {
	h := newHarness(t, func(o *Options, _ *time.Duration) { o.MaxAttempts = 3 })
	claimed, _ := spool.OpenDir(h.layout.Worker("claimed"))
	tmp, _ := spool.OpenDir(h.layout.Worker("tmp"))
	retry, spent := newJob("okokokokok1", job.FormatAudio), newJob("okokokokok1", job.Format360)
	for name, j := range map[string]*job.Job{retry.ID + ".job.1": retry, spent.ID + ".job.3": spent} {
		b, _ := j.Marshal()
		if err := spool.WriteFile(tmp, claimed, name, b, 0o640, -1, false); err != nil {
			t.Fatal(err)
		}
	}
	h.start()
	if r := h.result(retry.ID); r.Status != job.StatusDone {
		t.Fatalf("interrupted job not retried: %+v", r)
	}
	if r := h.result(spent.ID); r.Class != job.ClassGaveUp {
		t.Fatalf("job past max attempts: %+v", r)
	}
	if !strings.Contains(h.log.String(), `"attempt":2`) {
		t.Error("the retry was not counted as attempt 2")
	}
}

// TestSameJobIDRunsOnce: a job delivered again under the same ID (a
// Socket Mode redelivery to a receiver started since: job.IDFor) after
// the worker claimed the first is not run twice: one result, and the
// second file is gone. A marker older than seenFor is forgotten at start.
func TestSameJobIDRunsOnce(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	j := newJob("okokokokok2", job.FormatBest)
	h.submit(j)
	if r := h.result(j.ID); r.Status != job.StatusDone {
		t.Fatalf("first: %+v", r)
	}
	// The result file is the receiver's to take: take it, as it would.
	res, _ := filepath.Glob(filepath.Join(h.layout.Results(), j.ID+".*"))
	for _, f := range res {
		os.Remove(f)
	}
	// The first file's task is over: until then its name is pending, and
	// the watch skips a file of that name (it would wait in incoming/
	// for the next start).
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		h.w.mu.Lock()
		n := len(h.w.pending)
		h.w.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first delivery's task did not end in a minute")
		}
	}
	h.submit(j)
	// The second file is taken: seen as a duplicate and gone.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		ents, _ := os.ReadDir(h.layout.Incoming())
		c, _ := os.ReadDir(h.layout.Worker("claimed"))
		if len(ents) == 0 && len(c) == 0 && strings.Contains(h.log.String(), `"event":"duplicate"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second delivery was not taken as a duplicate in a minute: incoming %d, claimed %d\n%s", len(ents), len(c), h.log.String())
		}
	}
	time.Sleep(300 * time.Millisecond) // a second run, if any, would have written by now
	if res, _ := filepath.Glob(filepath.Join(h.layout.Results(), j.ID+".*")); len(res) != 0 {
		t.Errorf("the job ran twice: %v", res)
	}
}

// TestSameVideoOneDownload: two users ask for the same video and format
// at the same time: one download; the other job is parked behind it and
// answered from the store. Both get a "done" result. (Should the second
// job be claimed only after the first has stored the file, the outcome is
// the same; without parking, both download, and the second announces it.)
func TestSameVideoOneDownload(t *testing.T) {
	h := newHarness(t, nil)
	a, b := newJob("slowokAAAAA", job.FormatBest), newJob("slowokAAAAA", job.FormatBest)
	b.User = "U2"
	h.submit(a)
	h.submit(b)
	h.start()
	ra, rb := h.result(a.ID), h.result(b.ID)
	if ra.Status != job.StatusDone || rb.Status != job.StatusDone || ra.File != rb.File {
		t.Fatalf("results %+v, %+v", ra, rb)
	}
	started := 0
	for _, id := range []string{a.ID, b.ID} {
		if _, err := os.Stat(filepath.Join(h.layout.Results(), id+".started.result")); err == nil {
			started++
		}
	}
	if started != 1 || ra.Cached == rb.Cached {
		t.Errorf("%d downloads announced, cached %v/%v: want one download and one answer from the store", started, ra.Cached, rb.Cached)
	}
	// Another format of the same video is another download.
	c := newJob("slowokAAAAA", job.FormatAudio)
	h.submit(c)
	if r := h.result(c.ID); r.Status != job.StatusDone || r.Cached {
		t.Errorf("another format: %+v", r)
	}
}

// TestParkedJobsHoldNoSlot: jobs parked behind a download give their
// worker slot back: with two slots, one download that does not end until
// the test says so and two jobs parked behind it, another user's job
// still runs and finishes. Had the parked jobs kept their slots, it
// would wait for the blocked download, which waits for it: the test
// fails on its timeout. Then the download ends and the parked jobs get
// its file.
func TestParkedJobsHoldNoSlot(t *testing.T) {
	h := newHarness(t, gateTimeout)
	h.start()
	a := newJob("gateAAAAAAA", job.FormatBest)
	h.submit(a)
	gate := filepath.Join(h.layout.Work(), a.ID)
	h.waitLog(`"event":"started","job":"` + a.ID)
	b, c := newJob("gateAAAAAAA", job.FormatBest), newJob("gateAAAAAAA", job.FormatBest)
	h.submit(b)
	h.submit(c)
	h.waitLogN("parked behind the same video's download", 2)
	d := newJob("okokokokok1", job.FormatBest)
	h.submit(d)
	if r := h.result(d.ID); r.Status != job.StatusDone {
		t.Fatalf("another video, while the parked jobs wait: %+v", r)
	}
	releaseGate(t, gate)
	for _, j := range []*job.Job{a, b, c} {
		if r := h.result(j.ID); r.Status != job.StatusDone || r.File != "gateAAAAAAA-best.mp4" || r.Cached != (j != a) {
			t.Errorf("job %s: %+v", j.ID, r)
		}
	}
}

// TestProgressRecords: the download's progress lines become progress
// records for the courier: numbers only, each percent once, numbered,
// with the job's reply token; a line that is not a progress line makes
// none.
func TestProgressRecords(t *testing.T) {
	h := newHarness(t, func(o *Options, _ *time.Duration) { o.ProgressEvery = time.Nanosecond })
	h.start()
	j := newJob("progressAAA", job.FormatBest)
	h.submit(j)
	if r := h.result(j.ID); r.Status != job.StatusDone {
		t.Fatalf("result %+v", r)
	}
	var got []job.Progress
	for seq := 1; ; seq++ {
		b, err := os.ReadFile(filepath.Join(h.layout.Results(), (&job.Progress{Job: j.ID, Seq: seq}).FileName()))
		if err != nil {
			break
		}
		p, err := job.ParseProgress(b)
		if err != nil {
			t.Fatalf("record %d: %v", seq, err)
		}
		got = append(got, *p)
	}
	if len(got) != 3 || got[0].Percent != 10 || got[1].Percent != 55 || got[2].Percent != 100 {
		t.Fatalf("progress records %+v, want 10, 55, 100", got)
	}
	if p := got[1]; p.Bytes != 500 || p.Total != 1000 || p.Speed != 250 || p.ETA != 2 || p.Reply != token || p.Seq != 2 {
		t.Errorf("record %+v", p)
	}
}

package worker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/job"
)

func newRequest(kind job.RequestKind, user string) *job.Request {
	return &job.Request{V: 1, ID: job.NewID(), Kind: kind, Team: "T1", User: user, Channel: "C1", Created: time.Now().Unix(), Reply: token}
}

func (h *harness) ask(r *job.Request) *job.Request {
	h.t.Helper()
	b, err := r.Marshal()
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.out.Put(r.FileName(), b); err != nil {
		h.t.Fatal(err)
	}
	path := filepath.Join(h.layout.Results(), r.FileName())
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) { // a hang guard
		if b, err := os.ReadFile(path); err == nil {
			got, err := job.ParseRequest(b)
			if err != nil {
				h.t.Fatalf("worker forwarded an invalid request: %v", err)
			}
			os.Remove(path)
			return got
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("request %s not forwarded; log:\n%s", r.ID, h.log.String())
		}
	}
}

func (h *harness) waitLog(what string) { h.t.Helper(); h.waitLogN(what, 1) }

// waitLogN waits until the log holds what n times.
func (h *harness) waitLogN(what string, n int) {
	h.t.Helper()
	for deadline := time.Now().Add(time.Minute); strings.Count(h.log.String(), what) < n; time.Sleep(10 * time.Millisecond) { // a hang guard
		if time.Now().After(deadline) {
			h.t.Fatalf("no %d× %s in the log:\n%s", n, what, h.log.String())
		}
	}
}

// gateRunning reports whether a download of the gate video is running:
// the fake yt-dlp's command line names it.
// releaseGate lets the gated download in dir end: it waits until a
// process runs in dir (the launcher has checked the directory and
// started yt-dlp there), then writes the file the fake waits for.
// Written earlier, the launcher could find the directory not empty and
// refuse it.
func releaseGate(t *testing.T, dir string) {
	t.Helper()
	abs, _ := filepath.Abs(dir)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) { // a hang guard
		found := false
		cwds, _ := filepath.Glob("/proc/[0-9]*/cwd")
		for _, c := range cwds {
			if target, err := os.Readlink(c); err == nil && target == abs {
				found = true
				break
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no download started in %s", dir)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func gateRunning(t *testing.T) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), "gateAAAAAAA") {
			return true
		}
	}
	return false
}

// gateTimeout gives the gated downloads (gateAAAAAAA waits for the test's
// "go" file) a time limit of minutes: a hang guard, which the default
// 10 s is not on a loaded machine.
func gateTimeout(_ *Options, timeout *time.Duration) { *timeout = 5 * time.Minute }

// TestQueueAndCancel: with one slot, jobs behind a running download get
// their place in the queue; a user cancels their own queued job (it
// never starts) and their running download (its processes end, and the
// next job gets the slot), not another user's; an admin may; a list is
// forwarded as it came.
func TestQueueAndCancel(t *testing.T) {
	// The gated downloads wait for the test: a time limit of minutes, a
	// hang guard only.
	h := newHarness(t, func(o *Options, timeout *time.Duration) { o.Concurrency, *timeout = 1, 5*time.Minute })
	h.start()
	a := newJob("gateAAAAAAA", job.FormatBest)
	h.submit(a)
	h.waitLog(`"event":"started","job":"` + a.ID)
	b, c := newJob("okokokokok1", job.FormatBest), newJob("okokokokok2", job.FormatBest)
	c.User = "U2"
	h.submit(b)
	h.submit(c)
	for i, j := range []*job.Job{b, c} {
		path := filepath.Join(h.layout.Results(), j.ID+".queued.result")
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(path); err == nil || time.Now().After(deadline) {
				break
			}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("no queued result for job %d: %v", i, err)
		}
		r, err := job.ParseResult(data)
		if err != nil || r.Position != i+1 {
			t.Fatalf("queued result %d: %+v, %v; want position %d", i, r, err, i+1)
		}
	}

	// U1 may not cancel U2's job.
	req := newRequest(job.RequestCancel, "U1")
	req.Job = c.ID
	if got := h.ask(req); got.Outcome != job.OutcomeNotYours || got.Count != 0 {
		t.Fatalf("cancel of another's job: %+v", got)
	}
	// U1 cancels their queued job: it never starts.
	req = newRequest(job.RequestCancel, "U1")
	req.Job = b.ID
	if got := h.ask(req); got.Outcome != job.OutcomeCancelled || got.Count != 1 || got.Reply != token {
		t.Fatalf("cancel of a queued job: %+v", got)
	}
	if r := h.result(b.ID); r.Status != job.StatusCancelled {
		t.Fatalf("cancelled job's result: %+v", r)
	}
	// The result is written before the claimed file is removed: wait.
	for _, p := range []string{h.layout.Incoming(), h.layout.Worker("claimed")} {
		var names []string
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) { // a hang guard
			if names, _ = filepath.Glob(filepath.Join(p, b.ID+"*")); len(names) == 0 {
				break
			}
		}
		if len(names) != 0 {
			t.Errorf("cancelled job left %v", names)
		}
	}
	// U1 cancels their running download by its link's video.
	if !gateRunning(t) {
		t.Fatal("the gate download is not running")
	}
	req = newRequest(job.RequestCancel, "U1")
	req.Video = a.Video
	if got := h.ask(req); got.Outcome != job.OutcomeCancelled || got.Count != 1 {
		t.Fatalf("cancel of a running job: %+v", got)
	}
	if r := h.result(a.ID); r.Status != job.StatusCancelled {
		t.Fatalf("cancelled download's result: %+v", r)
	}
	if gateRunning(t) {
		t.Error("the cancelled download is still running")
	}
	// The slot is free: U2's job runs.
	if r := h.result(c.ID); r.Status != job.StatusDone {
		t.Fatalf("next job: %+v", r)
	}
	if strings.Contains(h.log.String(), `"event":"started","job":"`+b.ID) {
		t.Error("the cancelled queued job started")
	}

	// An admin cancels another user's download.
	d := newJob("gateAAAAAAA", job.FormatBest)
	d.User = "U2"
	h.submit(d)
	h.waitLog(`"event":"started","job":"` + d.ID)
	req = newRequest(job.RequestCancel, "U1")
	req.Job, req.Admin = d.ID, true
	if got := h.ask(req); got.Outcome != job.OutcomeCancelled {
		t.Fatalf("admin's cancel: %+v", got)
	}
	if r := h.result(d.ID); r.Status != job.StatusCancelled {
		t.Fatalf("admin-cancelled job: %+v", r)
	}
	// Nothing left to cancel.
	req = newRequest(job.RequestCancel, "U1")
	req.Job = d.ID
	if got := h.ask(req); got.Outcome != job.OutcomeNotFound {
		t.Fatalf("cancel of a finished job: %+v", got)
	}
	// A list goes to the courier as it came.
	l := newRequest(job.RequestList, "U1")
	if got := h.ask(l); *got != *l {
		t.Fatalf("forwarded %+v, sent %+v", got, l)
	}
}

// TestCancelLeaderRunsParked: a user cancels a download another user's
// job is parked behind: that job is not cancelled, it downloads itself.
func TestCancelLeaderRunsParked(t *testing.T) {
	h := newHarness(t, gateTimeout)
	h.start()
	a, b := newJob("gateAAAAAAA", job.FormatBest), newJob("gateAAAAAAA", job.FormatBest)
	b.User = "U2"
	h.submit(a)
	h.waitLog(`"event":"started","job":"` + a.ID)
	h.submit(b)
	h.waitLog("parked behind the same video's download")
	req := newRequest(job.RequestCancel, "U1")
	req.Job = a.ID
	if got := h.ask(req); got.Outcome != job.OutcomeCancelled || got.Count != 1 {
		t.Fatalf("cancel: %+v", got)
	}
	if r := h.result(a.ID); r.Status != job.StatusCancelled {
		t.Fatalf("cancelled job: %+v", r)
	}
	h.waitLog(`"event":"started","job":"` + b.ID)
	releaseGate(t, filepath.Join(h.layout.Work(), b.ID))
	if r := h.result(b.ID); r.Status != job.StatusDone || r.Cached {
		t.Fatalf("parked job after its leader's cancel: %+v", r)
	}
}

// TestHostileRequests: a request the receiver would never write is
// quarantined with an alert, and nothing is forwarded.
func TestHostileRequests(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	forged := newRequest(job.RequestCancel, "U1")
	forged.Job, forged.Outcome = job.NewID(), job.OutcomeNotFound // only the worker sets outcomes
	b, _ := forged.Marshal()
	renamed := newRequest(job.RequestList, "U1")
	rb, _ := renamed.Marshal()
	for name, data := range map[string][]byte{
		forged.FileName():            b,
		job.RequestName(job.NewID()): rb, // another request's content
		job.RequestName(job.NewID()): []byte(`{"v":1}`),
	} {
		if err := h.out.Put(name, data); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) { // a hang guard
			if q, _ := filepath.Glob(filepath.Join(h.layout.Worker("quarantine"), "*."+name)); len(q) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not quarantined; log:\n%s", name, h.log.String())
			}
		}
		if _, err := os.Stat(filepath.Join(h.layout.Results(), name)); err == nil {
			t.Errorf("%s forwarded", name)
		}
	}
	// The file is moved aside before the alert is logged: wait for the
	// three alerts, then check there is no fourth.
	h.waitLogN(`"event":"quarantined","alert":true`, 3)
	if n := strings.Count(h.log.String(), `"event":"quarantined"`); n != 3 {
		t.Errorf("%d quarantine events, want 3", n)
	}
}

// TestQueueBounded: past maxQueue jobs waiting, enqueue adds nothing
// until there is room (it waits; a stop ends the wait): a flood of job
// files cannot grow the worker's memory without bound.
func TestQueueBounded(t *testing.T) {
	h := newHarness(t, nil)
	defer func(n int) { maxQueue = n }(maxQueue)
	maxQueue = 2
	live := context.Background()
	for _, n := range []string{"a", "b"} {
		h.w.enqueue(live, task{name: n, preview: newJob("okokokokok1", job.FormatBest)}, false)
	}
	stopped, stop := context.WithCancel(live)
	stop()
	h.w.enqueue(stopped, task{name: "c", preview: newJob("okokokokok1", job.FormatBest)}, false)
	if n := len(h.w.queue); n != 2 {
		t.Fatalf("%d tasks queued, want the bound, 2", n)
	}
	if _, ok := h.w.next(live); !ok {
		t.Fatal("no task")
	}
	h.w.enqueue(live, task{name: "c", preview: newJob("okokokokok1", job.FormatBest)}, false)
	if n := len(h.w.queue); n != 2 {
		t.Fatalf("%d tasks queued after one was taken, want 2", n)
	}
}

// runningState returns j's entry among the taken jobs, copied.
func (h *harness) runningState(id string) (r running, ok bool) {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	if p := h.w.running[id]; p != nil {
		return *p, true
	}
	return running{}, false
}

func (h *harness) waitRunning(id string, ok func(running) bool) {
	h.t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) { // a hang guard
		if r, found := h.runningState(id); found && ok(r) {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("job %s never reached the state; log:\n%s", id, h.log.String())
		}
	}
}

// TestCancelTakenNotStarted: a job a slot has taken from the queue but
// not yet started (here: held in its store lookup) can be cancelled: it
// never starts and ends cancelled.
func TestCancelTakenNotStarted(t *testing.T) {
	h := newHarness(t, nil)
	h.w.storeMu.Lock()
	locked := true
	defer func() {
		if locked {
			h.w.storeMu.Unlock()
		}
	}()
	h.start()
	j := newJob("okokokokok1", job.FormatBest)
	h.submit(j)
	h.waitRunning(j.ID, func(r running) bool { return r.stop == nil })
	req := newRequest(job.RequestCancel, "U1")
	req.Job = j.ID
	if got := h.ask(req); got.Outcome != job.OutcomeCancelled || got.Count != 1 {
		t.Fatalf("cancel of a taken job: %+v", got)
	}
	h.w.storeMu.Unlock()
	locked = false
	if r := h.result(j.ID); r.Status != job.StatusCancelled {
		t.Fatalf("result %+v", r)
	}
	if strings.Contains(h.log.String(), `"event":"started","job":"`+j.ID) {
		t.Error("the cancelled job started")
	}
}

// TestCancelTooLate: once the download has returned, the file is being
// stored: a cancel finds nothing to stop, and the job is saved.
func TestCancelTooLate(t *testing.T) {
	h := newHarness(t, gateTimeout)
	h.start()
	j := newJob("gateAAAAAAA", job.FormatBest)
	h.submit(j)
	h.waitLog(`"event":"started","job":"` + j.ID)
	h.w.storeMu.Lock() // the store waits for it
	releaseGate(t, filepath.Join(h.layout.Work(), j.ID))
	h.waitRunning(j.ID, func(r running) bool { return r.ended })
	req := newRequest(job.RequestCancel, "U1")
	req.Job = j.ID
	got := h.ask(req)
	h.w.storeMu.Unlock()
	if got.Outcome != job.OutcomeNotFound {
		t.Errorf("cancel after the download: %+v", got)
	}
	if r := h.result(j.ID); r.Status != job.StatusDone {
		t.Fatalf("result %+v", r)
	}
}

// TestCancelSentWhileDown: a job and a cancel of it, both waiting when
// the worker starts: the job is queued before the cancel is handled,
// whatever the directory order, so the cancel finds it.
func TestCancelSentWhileDown(t *testing.T) {
	for i := 0; i < 5; i++ {
		h := newHarness(t, nil)
		j := newJob("okokokokok1", job.FormatBest)
		h.submit(j)
		req := newRequest(job.RequestCancel, "U1")
		req.Job = j.ID
		b, _ := req.Marshal()
		if err := h.out.Put(req.FileName(), b); err != nil {
			t.Fatal(err)
		}
		h.start()
		if r := h.result(j.ID); r.Status != job.StatusCancelled {
			t.Fatalf("round %d: %+v", i, r)
		}
		h.stop()
	}
}

// TestRunEndsWhenWatchFails: a watch that fails ends Run with its error;
// the download slots do not keep it waiting.
func TestRunEndsWhenWatchFails(t *testing.T) {
	h := newHarness(t, nil)
	if err := os.Rename(h.layout.Incoming(), h.layout.Incoming()+".gone"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.w.Run(context.Background()) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run returned no error")
		}
	case <-time.After(time.Minute): // a hang guard
		t.Fatal("Run did not return")
	}
}

package worker

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/job"
)

// TestInterruptedStore: what a crash or a full disk can leave between a
// stored file and its sidecar never fails later requests. A file left
// without a sidecar (the order before the fix: file first, then sidecar)
// is replaced by the next download of its video; a sidecar left without
// its file (the order now) is ignored, then cleared at the next start,
// with the downloads' temporary copies.
func TestInterruptedStore(t *testing.T) {
	h := newHarness(t, nil)
	// A file without a sidecar, as a crash between the rename and the
	// sidecar used to leave. Before the fix every later request for this
	// video and format failed ("exists without metadata").
	orphan := filepath.Join(h.dl, job.StoredName("okokokokok1", job.Format720, "mp4"))
	if err := os.WriteFile(orphan, []byte("partial"), 0o640); err != nil {
		t.Fatal(err)
	}
	// A sidecar without its file (a crash between the two now), and what a
	// crash leaves in downloads/.tmp.
	side := filepath.Join(h.dl, job.SidecarName("okokokokok2", job.FormatAudio))
	s := &job.Stored{V: 1, Video: "okokokokok2", Format: job.FormatAudio, File: job.StoredName("okokokokok2", job.FormatAudio, "webm"),
		Title: "t", Duration: 1, Size: 5, StoredAt: 1, Job: job.NewID()}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(side, b, 0o640); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(h.dl, ".tmp", ".0123456789abcdef.mp4")
	if err := os.WriteFile(tmp, []byte("half a copy"), 0o640); err != nil {
		t.Fatal(err)
	}
	h.start()

	j := newJob("okokokokok1", job.Format720)
	h.submit(j)
	if r := h.result(j.ID); r.Status != job.StatusDone || r.Cached || r.Size != 11 {
		t.Fatalf("a download over a file without a sidecar: %+v", r)
	}
	if got, err := os.ReadFile(orphan); err != nil || string(got) != "media bytes" {
		t.Errorf("stored %q, %v: want the new download", got, err)
	}
	if _, err := os.Stat(filepath.Join(h.dl, job.SidecarName("okokokokok1", job.Format720))); err != nil {
		t.Errorf("no sidecar for the new download: %v", err)
	}
	// Run cleared the sidecar without a file and the temporary copy.
	for _, p := range []string{side, tmp} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", filepath.Base(p), err)
		}
	}
	// The video whose sidecar was orphaned downloads again.
	j2 := newJob("okokokokok2", job.FormatAudio)
	h.submit(j2)
	if r := h.result(j2.ID); r.Status != job.StatusDone || r.Cached {
		t.Fatalf("a download after a sidecar without its file: %+v", r)
	}
	// Every stored file has its sidecar, and the other way round.
	h.stop()
	ents, err := os.ReadDir(h.dl)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{".tmp", "okokokokok1-720p.json", "okokokokok1-720p.mp4", "okokokokok2-audio.json", "okokokokok2-audio.webm"}
	if !slices.Equal(names, want) {
		t.Errorf("downloads/ holds %q, want %q", names, want)
	}
	if removed := h.w.removeOrphans(); len(removed) != 0 {
		t.Errorf("a second sweep removed %q", removed)
	}
}

// TestKeptFinalResult: a final result kept before a crash (the worker
// died after keeping it, before or after writing it to results/) is
// written again at the next start and its job forgotten, never run again:
// the job keeps the one answer it was given.
func TestKeptFinalResult(t *testing.T) {
	h := newHarness(t, nil)
	j := newJob("okokokokok1", job.Format720)
	b, err := j.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	claimed := filepath.Join(h.layout.Worker("claimed"), job.ClaimedName(j.ID, 1))
	if err := os.WriteFile(claimed, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := j.Result(job.StatusFailed, job.ClassUnavailable)
	rb, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.layout.Worker("final"), r.FileName()), rb, 0o600); err != nil {
		t.Fatal(err)
	}
	h.start()
	if got := h.result(j.ID); got.Status != job.StatusFailed || got.Class != job.ClassUnavailable {
		t.Fatalf("result %+v, want the kept one", got)
	}
	h.stop()
	if _, err := os.Stat(filepath.Join(h.layout.Results(), j.ID+".started.result")); err == nil {
		t.Error("the job ran again")
	}
	for _, d := range []string{h.layout.Worker("claimed"), h.layout.Worker("final")} {
		if ents, _ := os.ReadDir(d); len(ents) != 0 {
			t.Errorf("%s holds %d entries", filepath.Base(d), len(ents))
		}
	}
}

// TestDownloaderGoneKeepsJob: when the downloader goes away mid-download
// (it crashed, or was restarted), Run ends and the job stays claimed,
// with no final result: the next start runs it again. It is not the
// job's failure ("internal error").
func TestDownloaderGoneKeepsJob(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	j := newJob("gateAAAAAAA", job.FormatBest)
	h.submit(j)
	h.waitLog(`"event":"started","job":"` + j.ID)
	h.w.opt.Launcher.Close()
	select {
	case err := <-h.done:
		h.cancel = nil // Run has returned
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(time.Minute): // a hang guard
		t.Fatal("Run goes on without its downloader")
	}
	if _, err := os.Stat(filepath.Join(h.layout.Worker("claimed"), job.ClaimedName(j.ID, 1))); err != nil {
		t.Errorf("the interrupted job is not kept claimed: %v", err)
	}
	if ents, _ := os.ReadDir(h.layout.Results()); len(ents) != 1 { // its started result only
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("results/ holds %q, want only the started result", names)
	}
}

// TestRedeliveryWhileRunning: a job file delivered again under the same
// ID while the first is still being handled (the watch skips a name in
// hand) is taken once the first ends, and answered as a duplicate: it
// does not wait in incoming/ for the next start.
func TestRedeliveryWhileRunning(t *testing.T) {
	h := newHarness(t, gateTimeout)
	h.start()
	j := newJob("gateAAAAAAA", job.FormatBest)
	h.submit(j)
	h.waitLog(`"event":"started","job":"` + j.ID)
	h.submit(j) // the same file again, while the first downloads
	releaseGate(t, filepath.Join(h.layout.Work(), j.ID))
	if r := h.result(j.ID); r.Status != job.StatusDone {
		t.Fatalf("result %+v", r)
	}
	h.waitLog(`"event":"duplicate","job":"` + j.ID)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) { // a hang guard
		if ents, _ := os.ReadDir(h.layout.Incoming()); len(ents) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the redelivered file stays in incoming/")
		}
	}
}

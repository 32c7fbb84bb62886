package worker

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/job"
)

// TestDiskFull fills a real file system (a 16 MiB tmpfs holding the spool
// and the downloads) while a download runs: the job fails cleanly as
// disk_full, with an alert; its final result waits for space, the job
// kept claimed; nothing is left in downloads/ or work/; and once space
// returns the answer goes out and the next job is saved.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED LOUDLY: mounting a small tmpfs to fill needs root; CI runs this as root")
	}
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=16m,mode=0755"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	h := newHarnessIn(t, root, nil, true)
	h.start()
	j := newJob("gateAAAAAAA", job.FormatBest)
	h.submit(j)
	h.waitLog(`"event":"started","job":"` + j.ID)

	// Fill the file system, then let the download write its file.
	fill := filepath.Join(root, "fill")
	f, err := os.Create(fill)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for i := 0; ; i++ { // the last pages
		if _, err := f.Write(chunk[:512]); err != nil || i > 1<<14 {
			break
		}
	}
	f.Close()
	releaseGate(t, filepath.Join(h.layout.Work(), j.ID))
	h.waitLog(`"event":"disk_full"`)
	// The final result can't be written: the job stays claimed.
	claimed := filepath.Join(h.layout.Worker("claimed"), job.ClaimedName(j.ID, 1))
	if _, err := os.Stat(claimed); err != nil {
		t.Errorf("the job is not kept claimed while the disk is full: %v", err)
	}
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	r := h.result(j.ID)
	if r.Status != job.StatusFailed || r.Class != job.ClassDiskFull {
		t.Fatalf("result %+v, want failed disk_full", r)
	}
	if !strings.Contains(r.Class.Describe(), "disk is full") {
		t.Errorf("message %q", r.Class.Describe())
	}
	// The service goes on once space is back.
	j2 := newJob("okokokokok1", job.FormatBest)
	h.submit(j2)
	if r := h.result(j2.ID); r.Status != job.StatusDone {
		t.Fatalf("after space came back: %+v", r)
	}
	h.stop()
	ents, _ := os.ReadDir(h.dl)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := ".tmp okokokokok1-best.json okokokokok1-best.mp4"; strings.Join(names, " ") != want {
		t.Errorf("downloads/ holds %q, want %q", names, want)
	}
	for _, d := range []string{filepath.Join(h.dl, ".tmp"), h.layout.Work(), h.layout.Worker("claimed"), h.layout.Worker("final")} {
		if ents, _ := os.ReadDir(d); len(ents) != 0 {
			t.Errorf("%s holds %d entries", d, len(ents))
		}
	}
}

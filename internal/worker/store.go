package worker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// removeOrphans clears what a crash can leave in downloads/ before the
// worker takes any job: the temporary copies in downloads/.tmp (a file
// being stored, a sidecar being written) and each sidecar whose file is
// missing or not the size it records (the worker died, or the disk
// filled, between writing the sidecar and renaming the file into place;
// see store). A stored file without a sidecar cannot come from this
// version; one from an earlier version is reported and left for the next
// download of its video to replace. It returns what it removed, for the
// log and the tests. Run calls it before any job runs (so without
// storeMu).
func (w *Worker) removeOrphans() (removed []string) {
	if names, err := allNames(w.dlTmp); err != nil {
		w.log.Error("couldn't list the downloads' temporary directory", "err", err)
	} else {
		for _, n := range names {
			if err := w.dlTmp.Remove(n); err != nil {
				w.log.Error("couldn't remove a temporary file", "name", n, "err", err)
				continue
			}
			removed = append(removed, ".tmp/"+n)
		}
	}
	// work/: the directory of a job no longer claimed (a crash came
	// between its final result and its removal). A claimed job's is
	// cleared when it runs again or ends.
	if jobs, err := w.work.Names(); err == nil {
		claimed := map[string]bool{}
		if names, err := w.inbox.Claimed.Names(); err == nil {
			for _, n := range names {
				if cn, err := job.ParseName(n); err == nil {
					claimed[cn.ID] = true
				}
			}
			for _, id := range jobs {
				if claimed[id] {
					continue
				}
				if err := os.RemoveAll(filepath.Join(w.layout.Work(), id)); err != nil {
					w.log.Error("couldn't remove a job directory", "dir", id, "err", err)
					continue
				}
				removed = append(removed, "work/"+id)
			}
		}
	}
	names, err := w.downloads.Names()
	if err != nil {
		w.log.Error("couldn't list the downloads", "err", err)
		return removed
	}
	described := map[string]bool{}
	var stored []string
	for _, n := range names {
		p, err := job.ParseName(n)
		if err != nil {
			continue
		}
		switch p.Kind {
		case job.KindSidecar:
			data, err := spool.ReadFile(w.downloads, n, -1, 4096)
			var s *job.Stored
			if err == nil {
				s, err = job.ParseStored(data)
			}
			if err != nil {
				// Not what a crash leaves (sidecars are renamed into
				// place whole): left for the admin, not removed.
				w.log.Warn("a sidecar that cannot be read", "name", n, "err", err)
				continue
			}
			var st unix.Stat_t
			err = unix.Fstatat(w.downloads.FD(), s.File, &st, unix.AT_SYMLINK_NOFOLLOW)
			if err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == s.Size {
				described[s.File] = true
				continue
			}
			if err != nil && !errors.Is(err, unix.ENOENT) {
				// EIO, EMFILE…: not known to be missing; kept.
				w.log.Warn("couldn't check a stored file", "name", s.File, "err", err)
				continue
			}
			if err := w.downloads.Remove(n); err != nil {
				w.log.Error("couldn't remove a sidecar without its file", "name", n, "err", err)
				continue
			}
			removed = append(removed, n)
		case job.KindStored:
			stored = append(stored, n)
		}
	}
	for _, n := range stored {
		if !described[n] {
			w.log.Warn("a stored file has no sidecar: the next download of its video replaces it", "name", n)
		}
	}
	if len(removed) > 0 {
		if err := w.downloads.Sync(); err != nil {
			w.log.Error("couldn't sync the downloads directory", "err", err)
		}
		w.log.Info("removed what an interrupted store left", "files", len(removed))
	}
	return removed
}

// allNames lists every entry of d, dot-files included (every temporary
// name starts with a dot; spool.Dir.Names leaves them out).
func allNames(d *spool.Dir) ([]string, error) {
	fd, err := unix.Openat(d.FD(), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), d.Path())
	defer f.Close()
	return f.Readdirnames(-1)
}

// putFinal writes a final result to results/; one there already (the
// same, written before a crash) is as good.
func (w *Worker) putFinal(name string, data []byte) error {
	err := w.results.Put(name, data)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// retry runs op until it succeeds or Run's context ends (false). A
// failure is logged once, and alerted once if the disk is full; then op
// is tried again every few seconds. Only a final result is written this
// way: nothing else the worker writes is worth holding a slot for.
func (w *Worker) retry(id, what string, op func() error) bool {
	err := op()
	if err == nil {
		return true
	}
	ctx := w.runCtx
	if ctx == nil {
		ctx = context.Background()
	}
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		audit.Alert(w.log, audit.DiskFull, "job", id, "what", what, "err", err.Error())
	} else {
		w.log.Error("couldn't "+what+"; retrying", "job", id, "err", err)
	}
	wait := 500 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			w.log.Warn("stopped before a final result was written: the job runs again at the next start", "job", id)
			return false
		case <-time.After(wait):
		}
		if op() == nil {
			w.log.Info("final result written after a retry", "job", id)
			return true
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// deliverKept writes again, at start, each final result a previous run
// kept and may not have written to results/ (it died in between), and
// forgets its job: a job is never worked out twice. The courier shows a
// result it has seen once (see courier's duplicate finals).
func (w *Worker) deliverKept() {
	names, err := w.kept.Names()
	if err != nil {
		w.log.Error("couldn't list kept final results", "err", err)
		return
	}
	if len(names) == 0 {
		return
	}
	claimed, err := w.inbox.Claimed.Names()
	if err != nil {
		w.log.Error("couldn't list claimed jobs", "err", err)
		return
	}
	for _, name := range names {
		n, err := job.ParseName(name)
		if err != nil || n.Kind != job.KindResult {
			w.kept.Remove(name)
			continue
		}
		data, err := spool.ReadFile(w.kept, name, -1, job.MaxRecordSize)
		if err == nil {
			_, err = job.ParseResult(data)
		}
		if err != nil {
			// The worker's own file, cut short by a crash before its
			// rename could not be: WriteFile renames whole files.
			w.log.Error("dropping an unreadable kept final result: its job runs again", "file", name, "err", err)
			w.kept.Remove(name)
			continue
		}
		if !w.retry(n.ID, "write a kept final result", func() error { return w.putFinal(name, data) }) {
			return
		}
		os.RemoveAll(filepath.Join(w.layout.Work(), n.ID)) // an attempt the crash cut short
		for _, c := range claimed {
			if cn, err := job.ParseName(c); err == nil && cn.Kind == job.KindClaimed && cn.ID == n.ID {
				w.inbox.Claimed.Remove(c)
			}
		}
		w.inbox.Claimed.Sync()
		w.kept.Remove(name)
		w.log.Info("wrote a final result kept before a restart", "job", n.ID, "status", n.Status)
	}
}

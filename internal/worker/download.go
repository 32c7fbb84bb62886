package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/sandbox"
	"github.com/ytkeep/ytkeep/internal/spool"
	"github.com/ytkeep/ytkeep/internal/ytdlp"
)

// process runs one validated job to its end.
//
// Two users who ask for the same video and format at the same time get
// one download: a job whose video and format another job is downloading
// is parked behind it (it gives its slot back at once) and answered when
// that one ends, with the stored file or the same failure. A parked job
// stays claimed: a shutdown leaves it for the next start, like the job it
// waits for.
func (w *Worker) process(ctx context.Context, j *job.Job, claimedAs string, attempt int) {
	key := j.Video + "-" + string(j.Format)
	w.mu.Lock()
	if r := w.running[j.ID]; r != nil && r.cancelled && r.stop == nil {
		// Cancelled since it left the queue.
		delete(w.running, j.ID)
		w.mu.Unlock()
		w.finish(j, claimedAs, j.Result(job.StatusCancelled, job.ClassNone))
		return
	}
	if parked, busy := w.inflight[key]; busy {
		w.inflight[key] = append(parked, parkedJob{j, claimedAs})
		if r := w.running[j.ID]; r != nil && r.stop == nil {
			delete(w.running, j.ID) // cancel finds it parked from now on
		}
		w.mu.Unlock()
		w.log.Info("parked behind the same video's download by another job", "job", j.ID, "video", j.Video, "format", j.Format)
		return
	}
	w.inflight[key] = nil
	w.mu.Unlock()

	r := w.run(ctx, j, claimedAs, attempt)

	w.mu.Lock()
	parked := w.inflight[key]
	delete(w.inflight, key)
	w.mu.Unlock()
	if r == nil {
		return // shutting down: the parked jobs stay claimed too
	}
	if r.Status == job.StatusCancelled || r.Class == job.ClassQuota {
		// Its requester stopped the download, or may download no more
		// today: that is not the parked jobs' answer. Each runs again,
		// ahead of the queue (the first downloads, the others park
		// behind it).
		for i := len(parked) - 1; i >= 0; i-- {
			p := parked[i]
			w.enqueue(ctx, task{name: p.claimedAs, j: p.j, claimedAs: p.claimedAs, attempt: attempt}, true)
		}
		return
	}
	for _, p := range parked {
		answer := p.j.Result(job.StatusFailed, r.Class)
		if r.Status == job.StatusDone {
			if s := w.lookupStored(p.j.Video, p.j.Format); s != nil {
				answer = storedResult(s, p.j, true)
			} else {
				answer = p.j.Result(job.StatusFailed, job.ClassInternal)
			}
		}
		w.finish(p.j, p.claimedAs, answer)
	}
}

// progressReporter returns what the download's progress lines go to: a
// progress record for the courier (numbers only, with the job's reply
// token), at most one per Options.ProgressEvery and only when the percent
// has gone up (so at most 100 per attempt, whatever yt-dlp prints; 0%, and
// an unknown percent, make none).
func (w *Worker) progressReporter(j *job.Job) func(ytdlp.Progress) {
	var last time.Time
	seq, percent := 0, 0
	return func(p ytdlp.Progress) {
		now := time.Now()
		if p.Percent <= percent || now.Sub(last) < w.opt.ProgressEvery || seq >= job.MaxProgress {
			return
		}
		seq++
		last, percent = now, p.Percent
		r := &job.Progress{V: job.Version, Job: j.ID, Seq: seq, Percent: p.Percent, Bytes: p.Bytes, Total: p.Total,
			Speed: p.Speed, ETA: p.ETA, Reply: j.Reply}
		data, err := r.Marshal()
		if err == nil {
			err = w.results.Put(r.FileName(), data)
		}
		if err != nil {
			w.log.Error("couldn't report progress", "job", j.ID, "err", err)
		}
	}
}

// parkedJob is a claimed job waiting for another's download of the same
// video and format (process).
type parkedJob struct {
	j         *job.Job
	claimedAs string
}

// run runs j (answered from the store if the file is there) and returns
// its final result, or nil when shutdown interrupted it (it stays
// claimed; the next start retries it).
func (w *Worker) run(ctx context.Context, j *job.Job, claimedAs string, attempt int) *job.Result {
	if s := w.lookupStored(j.Video, j.Format); s != nil {
		r := storedResult(s, j, true)
		w.finish(j, claimedAs, r)
		return r
	}
	// The file may be as large as MaxFileBytes: that much is held
	// against the quota while it downloads, the real size after.
	if !w.usage.reserve(j.User, w.opt.MaxFileBytes) {
		audit.Event(w.log, audit.Refused, "reason", "daily_quota", "job", j.ID, "user", j.User, "team", j.Team)
		r := j.Result(job.StatusFailed, job.ClassQuota)
		w.finish(j, claimedAs, r)
		return r
	}
	jctx := w.startRunning(ctx, j)
	if jctx == nil {
		w.usage.settle(j.User, w.opt.MaxFileBytes, 0)
		r := j.Result(job.StatusCancelled, job.ClassNone)
		w.finish(j, claimedAs, r)
		return r
	}
	if attempt == 1 {
		w.report(j.Result(job.StatusStarted, job.ClassNone))
	}
	r := w.download(jctx, j)
	cancelled := w.stopRunning(j)
	var size int64
	if r.Status == job.StatusDone {
		size = r.Size
	}
	if err := w.usage.settle(j.User, w.opt.MaxFileBytes, size); err != nil {
		w.log.Error("couldn't count a download against its user's daily quota", "job", j.ID, "user", j.User, "err", err)
	}
	if ctx.Err() != nil {
		w.log.Info("job interrupted by shutdown", "job", j.ID)
		return nil
	}
	if cancelled && r.Status != job.StatusDone {
		// Stopped by its requester. (A download that ended just as
		// the cancel came is saved: the file is there.)
		r = j.Result(job.StatusCancelled, job.ClassNone)
	}
	w.finish(j, claimedAs, r)
	return r
}

// download runs yt-dlp for j in a fresh job directory and stores the file.
func (w *Worker) download(ctx context.Context, j *job.Job) *job.Result {
	fail := func(c job.Class) *job.Result { return j.Result(job.StatusFailed, c) }
	dirPath := filepath.Join(w.layout.Work(), j.ID)
	if err := os.RemoveAll(dirPath); err != nil { // leftovers of a crashed attempt
		w.log.Error("couldn't clear job directory", "job", j.ID, "err", err)
		return fail(job.ClassInternal)
	}
	if err := os.Mkdir(dirPath, 0o700); err != nil {
		w.log.Error("couldn't create job directory", "job", j.ID, "err", err)
		return fail(job.ClassInternal)
	}
	defer func() {
		// The downloader tidied it: only files at its top are left, which
		// the worker, its owner, may remove. Anything else is a leftover
		// that only the downloader's user (or root) could remove.
		if err := os.RemoveAll(dirPath); err != nil {
			audit.Alert(w.log, audit.Violation, "job", j.ID, "video", j.Video, "reason", "job_dir_left", "err", errors.Unwrap(err))
		}
	}()
	dir, err := os.Open(dirPath)
	if err != nil {
		return fail(job.ClassInternal)
	}
	defer dir.Close()
	// Lend the directory to the downloader's group (the kernel gave it
	// that group: work/ is setgid) for the time of the download; then it
	// is the worker's alone again, and no download, running or
	// lingering, can reach it (Unix modes, behind the downloader's
	// Landlock rules).
	if err := dir.Chmod(0o770); err != nil {
		w.log.Error("couldn't lend the job directory", "job", j.ID, "err", err)
		return fail(job.ClassInternal)
	}
	defer dir.Chmod(0o700)

	pr, pw, err := os.Pipe()
	if err != nil {
		return fail(job.ClassInternal)
	}
	parsed := make(chan *ytdlp.Output, 1)
	progress := w.progressReporter(j)
	go func() {
		o, err := ytdlp.ParseOutputProgress(pr, progress)
		pr.Close()
		if err != nil {
			w.log.Warn("odd yt-dlp output", "job", j.ID, "err", err)
		}
		parsed <- o
	}()
	stderr := &tailBuffer{max: 16 << 10}
	audit.Event(w.log, audit.Started, "job", j.ID, "video", j.Video, "format", j.Format, "ytdlp", w.opt.Launcher.Version())
	// RLIMIT_FSIZE caps each file, not their number: watch the job
	// directory's total and stop the download past its budget.
	runCtx, stopRun := context.WithCancel(ctx)
	overBudget := make(chan diskOver, 1)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		w.watchDiskUse(runCtx, dir, diskBudget(w.opt.MaxFileBytes), func(used int64, limit string) {
			overBudget <- diskOver{used, limit}
			stopRun()
		})
	}()
	// The launcher builds yt-dlp's command line from the ID and format.
	outcome, err := w.opt.Launcher.Download(runCtx, j.ID, j.Video, j.Format, dir, pw, stderr)
	// Busy (every slot of a launcher that another worker run still
	// used, or fewer slots than worker.concurrency): nothing ran; wait
	// for a slot, for a few minutes at most.
	for tries := 0; errors.Is(err, sandbox.ErrBusy) && tries < 600 && runCtx.Err() == nil; tries++ {
		if tries == 0 {
			w.log.Warn("the downloader is busy: waiting for a slot", "job", j.ID)
		}
		select {
		case <-runCtx.Done():
		case <-time.After(500 * time.Millisecond):
			outcome, err = w.opt.Launcher.Download(runCtx, j.ID, j.Video, j.Format, dir, pw, stderr)
		}
	}
	w.downloadEnded(j) // too late to cancel: what follows stores the file
	stopRun()
	<-watchDone
	if cerr := dir.Chmod(0o700); cerr != nil && err == nil {
		err = fmt.Errorf("couldn't take the job directory back: %w", cerr)
	}
	pw.Close()
	out := <-parsed
	select {
	case o := <-overBudget:
		audit.Alert(w.log, audit.Violation, "job", j.ID, "video", j.Video, "reason", "disk_budget", "limit", o.limit, "bytes", o.used)
		return fail(job.ClassTooLarge)
	default:
	}
	if err != nil {
		select {
		case <-w.opt.Launcher.Done():
			// The downloader went away: Run ends (and systemd starts
			// the worker again, which reconnects); the job stays
			// claimed and runs again then. Not the job's failure.
			<-ctx.Done()
		default:
		}
		if ctx.Err() != nil {
			return fail(job.ClassInternal)
		}
		w.log.Error("couldn't run the downloader", "job", j.ID, "err", err)
		return fail(job.ClassInternal)
	}
	tail := stderr.String()
	sig := ""
	if outcome.Signal != 0 {
		sig = unix.SignalName(outcome.Signal)
	}
	w.log.Info("downloader exited", "job", j.ID, "exit", outcome.ExitCode, "signal", sig,
		"elapsed_ms", outcome.Elapsed.Milliseconds(), "progress", out.Progress, "output_lines", out.Lines)
	w.opt.Metrics.Downloaded(outcome.Elapsed)
	switch {
	case outcome.OutputHeld:
		// A process of the download outlived the server's kill of its
		// tree (C2): a sandbox violation, and its output is cut short.
		audit.Alert(w.log, audit.Violation, "job", j.ID, "video", j.Video, "reason", "output_held", "stderr", lastLines(tail, 5))
		return fail(job.ClassSandbox)
	case outcome.TimedOut:
		return fail(job.ClassTimeout)
	case outcome.Violation():
		audit.Alert(w.log, audit.Violation, "job", j.ID, "video", j.Video, "signal", "SIGSYS", "stderr", lastLines(tail, 5))
		return fail(job.ClassSandbox)
	case outcome.Signal == syscall.SIGXFSZ:
		return fail(job.ClassTooLarge)
	case outcome.ExitCode == 126:
		w.log.Error("the sandbox launcher failed", "job", j.ID, "stderr", lastLines(tail, 5))
		return fail(job.ClassInternal)
	case outcome.Signal != 0:
		audit.Alert(w.log, audit.Crashed, "job", j.ID, "video", j.Video, "signal", sig, "stderr", lastLines(tail, 5))
		return fail(job.ClassUnavailable)
	case outcome.ExitCode != 0 && outcome.ExitCode != 101: // 101: --max-downloads reached
		w.log.Info("yt-dlp failed", "job", j.ID, "exit", outcome.ExitCode, "stderr", lastLines(tail, 5))
		c := ytdlp.Classify(tail)
		if c == job.ClassDiskFull {
			audit.Alert(w.log, audit.DiskFull, "job", j.ID, "what", "download", "err", "yt-dlp: no space left on device")
		}
		return fail(c)
	}
	name, ext, err := w.findOutput(dir, j.Video)
	if err != nil {
		w.log.Warn("no acceptable output", "job", j.ID, "err", err, "stderr", lastLines(tail, 5))
		switch c := ytdlp.Classify(tail); c {
		case job.ClassTooLarge:
			return fail(c)
		case job.ClassDiskFull:
			audit.Alert(w.log, audit.DiskFull, "job", j.ID, "what", "download", "err", "yt-dlp: no space left on device")
			return fail(c)
		}
		return fail(job.ClassBadOutput)
	}
	meta := &ytdlp.Meta{}
	if out.Meta != nil && out.Meta.ID == j.Video {
		meta = out.Meta
	}
	s, err := w.store(dir, name, j, ext, meta)
	if errors.Is(err, errTooLarge) {
		return fail(job.ClassTooLarge)
	}
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		audit.Alert(w.log, audit.DiskFull, "job", j.ID, "what", "store the download", "err", err.Error())
		return fail(job.ClassDiskFull)
	}
	if err != nil {
		w.log.Error("couldn't store the download", "job", j.ID, "err", err)
		return fail(job.ClassInternal)
	}
	w.opt.Metrics.Stored(s.Size)
	return storedResult(s, j, false)
}

// storedResult reports s as the outcome of j.
func storedResult(s *job.Stored, j *job.Job, cached bool) *job.Result {
	r := j.Result(job.StatusDone, job.ClassNone)
	r.Title, r.Duration, r.Size, r.File, r.Cached = s.Title, s.Duration, s.Size, s.File, cached
	return r
}

// diskOver is what watchDiskUse found past the budget.
type diskOver struct {
	used  int64
	limit string
}

// diskBudget is how much a job directory may hold: the file, a second copy
// while yt-dlp merges or converts, and room for its temporary files.
func diskBudget(maxFile int64) int64 { return 2*maxFile + 64<<20 }

// watchDiskUse calls over once if dir's tree passes its budget (diskUse),
// checking every 250 ms until ctx ends.
func (w *Worker) watchDiskUse(ctx context.Context, dir *os.File, budget int64, over func(used int64, limit string)) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if used, limit := diskUse(int(dir.Fd()), budget); limit != "" {
			over(used, limit)
			return
		}
	}
}

// Bounds of one walk of a job directory. yt-dlp leaves a handful of files
// one or two levels deep; only a hostile child builds more, to hide bytes
// from the walk or to make it slow (it writes unchecked meanwhile), so a
// tree past any bound counts as over budget. They keep a check to at most
// diskWalkMaxEntries fstatat and openat calls, diskWalkMaxDirBytes of
// directory data read, diskWalkMaxDepth+1 open descriptors and one
// 256-name batch per level.
const (
	diskWalkMaxDepth    = 16       // directory levels below the job directory
	diskWalkMaxEntries  = 10000    // names looked at, at every level together
	diskWalkMaxDirBytes = 16 << 20 // the directories' own sizes, added up
)

// Why diskUse stopped, as reported in the disk_budget alert.
const (
	diskOverBytes      = "bytes"
	diskOverDepth      = "depth"
	diskOverEntries    = "entries"
	diskOverDirBytes   = "dir_bytes"
	diskOverUnreadable = "unreadable"
)

// diskUse adds up the space taken by the tree under the directory fd,
// without following links, and returns it with the empty limit if it is
// at most budget. Otherwise it stops at once and names the limit passed:
// diskOverBytes, one of the walk's bounds (diskWalkMax*), or
// diskOverUnreadable if a part of the tree could not be read (it would
// hide what is below it). Only a name that vanished between being listed
// and being looked at is passed over: yt-dlp renames and removes its
// temporary files as it goes.
//
// Each file or directory counts as the larger of its allocated blocks
// (st_blocks*512) and its apparent size (st_size): a sparse file as if it
// were filled in, a preallocated one as what it holds on disk. A file
// with several names (hard links) counts once per name, too much rather
// than too little. Files the child has removed but still holds open are
// out of any walk's sight; RLIMIT_FSIZE and RLIMIT_NOFILE bound those.
func diskUse(fd int, budget int64) (used int64, limit string) {
	d, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, diskOverUnreadable
	}
	var st unix.Stat_t
	if unix.Fstat(d, &st) != nil {
		unix.Close(d)
		return 0, diskOverUnreadable
	}
	u := &diskWalk{budget: budget}
	if limit := u.add(&st); limit != "" {
		unix.Close(d)
		return u.used, limit
	}
	limit = u.dir(d, 0)
	return u.used, limit
}

// diskWalk is the state of one diskUse call.
type diskWalk struct {
	budget, used, dirBytes int64
	entries                int
}

// add counts one file or directory.
func (u *diskWalk) add(st *unix.Stat_t) string {
	n := max(st.Blocks*512, st.Size)
	u.used += n
	if u.used > u.budget || u.used < 0 {
		return diskOverBytes
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		u.dirBytes += n
		if u.dirBytes > diskWalkMaxDirBytes {
			return diskOverDirBytes
		}
	}
	return ""
}

// dir counts the entries of the directory d, which is depth levels below
// the job directory and already counted itself, and closes d.
func (u *diskWalk) dir(d int, depth int) string {
	f := os.NewFile(uintptr(d), "")
	defer f.Close()
	for {
		names, err := f.Readdirnames(256)
		for _, n := range names {
			if u.entries++; u.entries > diskWalkMaxEntries {
				return diskOverEntries
			}
			var st unix.Stat_t
			if err := unix.Fstatat(d, n, &st, unix.AT_SYMLINK_NOFOLLOW); err == unix.ENOENT {
				continue
			} else if err != nil {
				return diskOverUnreadable
			}
			if limit := u.add(&st); limit != "" {
				return limit
			}
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				continue
			}
			if depth+1 > diskWalkMaxDepth {
				return diskOverDepth
			}
			sub, err := unix.Openat(d, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			if err == unix.ENOENT {
				continue
			} else if err != nil {
				return diskOverUnreadable
			}
			if limit := u.dir(sub, depth+1); limit != "" {
				return limit
			}
		}
		if err == io.EOF {
			return ""
		}
		if err != nil {
			return diskOverUnreadable
		}
	}
}

// findOutput looks for the one file yt-dlp should have left: <video>.<ext>
// with an allowed extension. Anything else in the directory is ignored
// and removed with it.
func (w *Worker) findOutput(dir *os.File, video string) (name, ext string, err error) {
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return "", "", err
	}
	var found []string
	for _, n := range names {
		base, e, ok := strings.Cut(n, ".")
		if ok && base == video && job.AllowedExt(e) {
			found = append(found, n)
		}
	}
	if len(found) != 1 {
		return "", "", fmt.Errorf("found %d candidate files among %d entries", len(found), len(names))
	}
	_, ext, _ = strings.Cut(found[0], ".")
	return found[0], ext, nil
}

var errTooLarge = errors.New("file over the size cap")

// store moves the downloaded file into downloads/ under a name the worker
// chooses, then writes the sidecar. The file becomes visible only whole.
func (w *Worker) store(dir *os.File, name string, j *job.Job, ext string, meta *ytdlp.Meta) (*job.Stored, error) {
	// Open without following links and check what we opened: the child
	// wrote this directory and may have left a symlink or a hard link.
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("couldn't open output: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		return nil, fmt.Errorf("output is not a plain file (mode %o, %d links)", st.Mode, st.Nlink)
	}
	if st.Size > w.opt.MaxFileBytes {
		return nil, errTooLarge
	}
	stored := job.StoredName(j.Video, j.Format, ext)
	s := &job.Stored{V: 1, Video: j.Video, Format: j.Format, File: stored, Title: meta.Title, Duration: meta.Duration,
		Size: st.Size, StoredAt: time.Now().Unix(), Job: j.ID}

	// Copy into downloads/.tmp rather than rename: the job directory may be
	// on another file system, and a copy leaves the child no handle on the
	// stored file (it could have kept the original open for writing).
	tmpName := "." + j.ID + "." + ext
	out, err := unix.Openat(w.dlTmp.FD(), tmpName, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("couldn't create temporary file: %w", err)
	}
	of := os.NewFile(uintptr(out), tmpName)
	committed := false
	defer func() {
		of.Close()
		if !committed {
			w.dlTmp.Remove(tmpName)
		}
	}()
	n, err := io.Copy(of, io.LimitReader(f, w.opt.MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("couldn't copy output: %w", err)
	}
	if n != st.Size || n > w.opt.MaxFileBytes {
		return nil, fmt.Errorf("output changed size while copied (%d, then %d bytes)", st.Size, n)
	}
	if err := spool.SetGroup(of, w.dlGID); err != nil {
		return nil, fmt.Errorf("couldn't set the group of the stored file: %w", err)
	}
	if err := of.Chmod(0o640); err != nil {
		return nil, err
	}
	if err := of.Sync(); err != nil {
		return nil, err
	}

	w.storeMu.Lock()
	defer w.storeMu.Unlock()
	if prev := w.lookupStoredLocked(j.Video, j.Format); prev != nil {
		// Another job stored the same video meanwhile; keep the first.
		return prev, nil
	}
	// The sidecar first, then the file: a stored file always has its
	// sidecar. A crash (or a full disk) between the two leaves a sidecar
	// without its file, which lookupStored ignores, the next download of
	// the video replaces, and removeOrphans clears at the next start. The
	// other order left a file no sidecar described, and every later
	// request for it failed.
	data, err := s.Marshal()
	if err != nil {
		return nil, err
	}
	if err := spool.WriteFile(w.dlTmp, w.downloads, job.SidecarName(j.Video, j.Format), data, 0o640, w.dlGID, true); err != nil {
		return nil, err
	}
	// Replace, not rename: what has the name now is a file no valid
	// sidecar describes (lookupStored said so, under storeMu, and only
	// the worker writes downloads/), such as one an earlier version left.
	if err := w.dlTmp.Replace(tmpName, w.downloads, stored); err != nil {
		w.downloads.Remove(job.SidecarName(j.Video, j.Format))
		return nil, fmt.Errorf("couldn't store %s: %w", stored, err)
	}
	committed = true
	if err := w.downloads.Sync(); err != nil {
		return nil, err
	}
	return s, nil
}

// lookupStored returns the sidecar of an earlier download of video in
// format f, if the stored file is still there.
func (w *Worker) lookupStored(video string, f job.Format) *job.Stored {
	w.storeMu.Lock()
	defer w.storeMu.Unlock()
	return w.lookupStoredLocked(video, f)
}

func (w *Worker) lookupStoredLocked(video string, f job.Format) *job.Stored {
	data, err := spool.ReadFile(w.downloads, job.SidecarName(video, f), -1, 4096)
	if err != nil {
		return nil
	}
	s, err := job.ParseStored(data)
	if err != nil || s.Video != video || s.Format != f {
		w.log.Warn("ignoring an invalid sidecar", "video", video, "format", f)
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(w.downloads.FD(), s.File, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != s.Size {
		return nil
	}
	return s
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string { return string(b.buf) }

// lastLines returns the last n lines of s, each cut to 300 bytes, for logs.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 300 {
			lines[i] = l[:300] + "…"
		}
	}
	return strings.Join(lines, "\n")
}

// Package worker claims jobs from the spool, runs each download in the
// sandboxed downloader domain, stores the result and reports it back
// through the results spool.
//
// Every job file is hostile until proven otherwise (package spool checks
// the file, package job the bytes). The worker holds no Slack secret and
// has no network access of its own; only the child it launches downloads.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/egress"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/metrics"
	"github.com/ytkeep/ytkeep/internal/sandbox"
	"github.com/ytkeep/ytkeep/internal/spool"
	"github.com/ytkeep/ytkeep/internal/ytdlp"

	"golang.org/x/sys/unix"
)

// Options configure a Worker. All paths are absolute.
type Options struct {
	SpoolDir     string
	DownloadsDir string
	// Launcher runs downloads in the downloader domain; it was configured
	// (yt-dlp, limits, timeout) before the worker confined itself.
	Launcher     *sandbox.Launcher
	Concurrency  int
	MaxFileBytes int64
	MaxAttempts  int
	// DailyBytes caps what one user's jobs store in a UTC day (0: no
	// cap). A download starts only while the user's stored bytes and
	// those held for their running downloads (MaxFileBytes each) are
	// under it, so the day's total goes past it by at most MaxFileBytes;
	// a file already stored, a failed or a cancelled download costs
	// nothing.
	DailyBytes int64
	// Now is the clock of DailyBytes' UTC day (default time.Now).
	Now func() time.Time
	// ProgressEvery spaces a job's progress records (default 10 s).
	ProgressEvery time.Duration
	Logger        *slog.Logger
	// Metrics gets the queue's gauges and the downloads' histograms
	// (nil: none).
	Metrics *metrics.Set
}

// Worker processes jobs. Create it with New and start it with Run.
type Worker struct {
	opt       Options
	log       *slog.Logger
	layout    spool.Layout
	inbox     *spool.Inbox
	results   *spool.Outbox
	work      *spool.Dir
	downloads *spool.Dir
	dlTmp     *spool.Dir
	dlGID     int
	// seen holds a marker per job ID the worker has claimed (for
	// seenFor): a job delivered again under the same ID (a Socket Mode
	// redelivery, see job.IDFor) is not run twice.
	seen *spool.Dir
	// kept holds each final result from before it is written to
	// results/ until its job is forgotten (see finish).
	kept *spool.Dir
	// runCtx is Run's context: finish waits on it for a full disk.
	runCtx context.Context

	mu      sync.Mutex
	cond    *sync.Cond // on mu: the queue has a task, or ctx ended
	queue   []task     // jobs waiting for a slot, first first
	busy    int        // tasks being handled
	running map[string]*running
	pending map[string]bool // names queued or being handled
	// inflight holds, per video and format being downloaded, the jobs
	// parked behind that download (see process). Under mu.
	inflight map[string][]parkedJob
	storeMu  sync.Mutex // serialises lookups and stores in downloads/
	usage    *usage     // the daily download quota
}

// New opens the spool and downloads directories. It does not run yt-dlp.
func New(opt Options) (*Worker, error) {
	w := &Worker{opt: opt, log: opt.Logger, layout: spool.Layout{Root: opt.SpoolDir}, pending: map[string]bool{},
		inflight: map[string][]parkedJob{}, running: map[string]*running{}}
	w.cond = sync.NewCond(&w.mu)
	w.registerMetrics()
	if w.log == nil || opt.Launcher == nil {
		return nil, errors.New("worker: no logger or launcher")
	}
	if w.opt.ProgressEvery == 0 {
		w.opt.ProgressEvery = 10 * time.Second
	}
	// Job files must belong to the receiver: the owner of its private dir.
	recvUID, err := spool.Owner(w.layout.Receiver(""))
	if err != nil {
		return nil, err
	}
	open := func(path string) (*spool.Dir, error) { return spool.OpenDir(path) }
	var dirs [7]*spool.Dir
	for i, p := range []string{
		w.layout.Incoming(), w.layout.Worker("claimed"), w.layout.Worker("quarantine"),
		w.layout.Worker("tmp"), w.layout.Results(), w.layout.Work(), opt.DownloadsDir,
	} {
		if dirs[i], err = open(p); err != nil {
			return nil, err
		}
	}
	w.inbox = &spool.Inbox{In: dirs[0], Claimed: dirs[1], Quarantined: dirs[2], UID: recvUID, MaxSize: job.MaxRecordSize}
	if w.results, err = resultsOutbox(dirs[3], dirs[4]); err != nil {
		return nil, err
	}
	w.work = dirs[5]
	w.downloads = dirs[6]
	if w.dlGID, err = w.downloads.Group(); err != nil {
		return nil, err
	}
	tmpPath := opt.DownloadsDir + "/.tmp"
	if err := os.Mkdir(tmpPath, 0o700); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("couldn't create %s: %w", tmpPath, err)
	}
	if w.dlTmp, err = spool.OpenDir(tmpPath); err != nil {
		return nil, err
	}
	// worker/seen is in the tree (spool.Layout.Tree); a spool made before
	// it gets it here.
	if err := os.Mkdir(w.layout.Worker("seen"), 0o700); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("couldn't create %s: %w", w.layout.Worker("seen"), err)
	}
	if w.seen, err = spool.OpenDir(w.layout.Worker("seen")); err != nil {
		return nil, err
	}
	if err := os.Mkdir(w.layout.Worker("final"), 0o700); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("couldn't create %s: %w", w.layout.Worker("final"), err)
	}
	if w.kept, err = spool.OpenDir(w.layout.Worker("final")); err != nil {
		return nil, err
	}
	w.forgetSeen(time.Now())
	if opt.DailyBytes > 0 {
		wdir, err := spool.OpenDir(w.layout.Worker(""))
		if err != nil {
			return nil, err
		}
		now := opt.Now
		if now == nil {
			now = time.Now
		}
		if w.usage, err = openUsage(wdir, dirs[3], opt.DailyBytes, now); err != nil {
			// Not a reason to stop every download: count afresh.
			w.log.Error("couldn't read the daily download counts; counting afresh", "err", err)
			w.usage = &usage{dir: wdir, tmp: dirs[3], limit: opt.DailyBytes, now: now, Bytes: map[string]int64{}, held: map[string]int64{}}
		}
	}
	return w, nil
}

// seenFor is how long the worker remembers a job ID: far longer than
// Slack redelivers an envelope (seconds to minutes).
const seenFor = 48 * time.Hour

// markSeen records that job id is claimed, durably, and reports whether
// it is the first time.
func (w *Worker) markSeen(id string) (bool, error) {
	fd, err := unix.Openat(w.seen.FD(), id, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EEXIST) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	unix.Close(fd)
	return true, w.seen.Sync()
}

// forgetSeen removes the markers older than seenFor.
func (w *Worker) forgetSeen(now time.Time) {
	names, err := w.seen.Names()
	if err != nil {
		w.log.Error("couldn't list seen job IDs", "err", err)
		return
	}
	for _, n := range names {
		var st unix.Stat_t
		if unix.Fstatat(w.seen.FD(), n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && now.Sub(time.Unix(st.Mtim.Sec, st.Mtim.Nsec)) > seenFor {
			w.seen.Remove(n)
		}
	}
}

// Run processes jobs until ctx ends: first the jobs a previous run left
// claimed, then everything in incoming/, then each new file as inotify
// reports it (spool.Watch). It returns nil when ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	version := w.opt.Launcher.Version()
	w.log.Info("yt-dlp detected", "version", version)
	if ytdlp.OlderThan(version, ytdlp.CurrentVersion) {
		w.log.Warn("yt-dlp is older than "+ytdlp.CurrentVersion+": current YouTube downloads need a newer yt-dlp with a JavaScript runtime (deno); run ytkeep doctor", "version", version)
	}
	w.removeOrphans()
	ctx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	w.runCtx = ctx
	go func() {
		// Without its downloader the worker can do nothing: Run ends
		// (interrupted jobs stay claimed), and so does the daemon.
		select {
		case <-w.opt.Launcher.Done():
			w.log.Info("the downloader went away: stopping (systemd starts the worker again)")
			cancelRun()
		case <-ctx.Done():
		}
	}()
	w.deliverKept()
	go w.logEgress(ctx)
	var wg sync.WaitGroup
	for i := 0; i < w.opt.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				t, ok := w.next(ctx)
				if !ok {
					return
				}
				w.handle(ctx, t)
				w.done(t)
			}
		}()
	}
	// However Run ends (ctx, or the watch failing), the slots waiting in
	// next wake up and end before it returns.
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	defer func() {
		stop()
		cancelRun()
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
		wg.Wait()
	}()
	go func() {
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				w.forgetSeen(now)
			}
		}
	}()

	// Jobs first, requests after: a cancel sent while the worker was
	// down finds the job it names queued. Recovered (claimed) jobs, then
	// those waiting in incoming/ (the watch lists them again: a name
	// queued or handled already is skipped), then requests.
	claimed, err := w.inbox.Claimed.Names()
	if err != nil {
		return err
	}
	waiting, err := w.inbox.In.Names()
	if err != nil {
		return err
	}
	var requests []task
	for _, t := range append(tasksOf(claimed, true), tasksOf(waiting, false)...) {
		if k, err := job.ParseName(t.name); err == nil && k.Kind == job.KindRequest {
			requests = append(requests, t)
			continue
		}
		w.enqueue(ctx, t, false)
	}
	for _, t := range requests {
		w.request(t.name, t.recover)
	}
	w.log.Info("worker ready", "concurrency", w.opt.Concurrency, "recovered", len(claimed))
	// Requests are handled as they come, jobs queued: the watch never
	// waits for a download slot, so a cancel reaches a job still queued.
	return spool.Watch(ctx, w.inbox.In, func(name string) bool {
		if k, err := job.ParseName(name); err == nil && k.Kind == job.KindRequest {
			w.request(name, false)
		} else {
			w.enqueue(ctx, task{name: name}, false)
		}
		return ctx.Err() == nil
	})
}

// tasksOf returns a task for each file name.
func tasksOf(names []string, recover bool) []task {
	ts := make([]task, len(names))
	for i, n := range names {
		ts[i] = task{name: n, recover: recover}
	}
	return ts
}

// handle claims and processes one file.
func (w *Worker) handle(ctx context.Context, t task) {
	if t.j != nil {
		w.process(ctx, t.j, t.claimedAs, t.attempt)
		return
	}
	if t.recover {
		w.recoverClaimed(ctx, t.name)
		return
	}
	n, err := job.ParseName(t.name)
	if err != nil || n.Kind != job.KindJob {
		q := w.inbox.Reject(t.name)
		audit.Alert(w.log, audit.Quarantined, "file", t.name, "quarantine", q, "reason", "not a job file name")
		return
	}
	id := n.ID
	claimedAs := job.ClaimedName(id, 1)
	data, err := w.inbox.Claim(t.name, claimedAs)
	if errors.Is(err, spool.ErrGone) {
		return // claimed already, after a second notification
	}
	var he *spool.HostileError
	if errors.As(err, &he) {
		// No result: a refused file carries no reply token we could trust,
		// and the receiver never writes one; the admins get the alert.
		audit.Alert(w.log, audit.Quarantined, "file", t.name, "reason", he.Reason)
		return
	}
	if err != nil {
		w.log.Error("couldn't claim job", "file", t.name, "err", err)
		return
	}
	if inputHook != nil {
		inputHook(string(data))
	}
	j, err := w.parse(id, claimedAs, data)
	if err != nil {
		return
	}
	first, err := w.markSeen(j.ID)
	if err != nil {
		// Not knowing is not a reason to drop a job: run it.
		w.log.Error("couldn't record the job ID", "job", j.ID, "err", err)
	} else if !first {
		// Delivered again under the same ID after the first was claimed:
		// that one answers. No result: the user would get two.
		audit.Event(w.log, audit.Duplicate, "job", j.ID, "video", j.Video)
		if err := w.inbox.Claimed.Remove(claimedAs); err != nil {
			w.log.Error("couldn't remove a duplicate job", "job", j.ID, "err", err)
		}
		w.inbox.Claimed.Sync()
		return
	}
	audit.Event(w.log, audit.Claimed, "job", j.ID, "video", j.Video, "format", j.Format, "team", j.Team, "user", j.User, "attempt", 1)
	w.process(ctx, j, claimedAs, 1)
}

// parse validates claimed bytes; on failure it quarantines and alerts.
func (w *Worker) parse(id, claimedAs string, data []byte) (*job.Job, error) {
	j, err := job.ParseJob(data)
	if err == nil && j.ID != id {
		err = fmt.Errorf("file name names job %s, content job %s", id, j.ID)
	}
	if err != nil {
		q := w.inbox.Quarantine(claimedAs)
		audit.Alert(w.log, audit.Quarantined, "file", claimedAs, "quarantine", q, "reason", err.Error())
		return nil, err
	}
	return j, nil
}

// recoverClaimed resumes a job that a previous run claimed but did not
// finish, counting attempts in the claimed file's name.
func (w *Worker) recoverClaimed(ctx context.Context, name string) {
	cn, err := job.ParseName(name)
	if err != nil || cn.Kind != job.KindClaimed {
		q := w.inbox.Quarantine(name)
		audit.Alert(w.log, audit.Quarantined, "file", name, "quarantine", q, "reason", "not a claimed job name")
		return
	}
	id, n := cn.ID, cn.Attempt
	data, err := spool.ReadFile(w.inbox.Claimed, name, w.inbox.UID, job.MaxRecordSize)
	if err != nil {
		q := w.inbox.Quarantine(name)
		audit.Alert(w.log, audit.Quarantined, "file", name, "quarantine", q, "reason", err.Error())
		return
	}
	j, err := w.parse(id, name, data)
	if err != nil {
		return
	}
	// Claimed before a crash that came before its marker: mark it now,
	// so that a redelivery is not run next to it.
	if _, err := w.markSeen(j.ID); err != nil {
		w.log.Error("couldn't record the job ID", "job", j.ID, "err", err)
	}
	if n >= w.opt.MaxAttempts {
		w.log.Warn("giving up on a job interrupted too many times", "job", id, "attempts", n)
		w.finish(j, name, j.Result(job.StatusFailed, job.ClassGaveUp))
		return
	}
	next := job.ClaimedName(id, n+1)
	if err := w.inbox.Claimed.Rename(name, w.inbox.Claimed, next); err != nil {
		w.log.Error("couldn't count an attempt", "job", id, "err", err)
		return
	}
	w.inbox.Claimed.Sync()
	audit.Event(w.log, audit.Claimed, "job", j.ID, "video", j.Video, "format", j.Format, "team", j.Team, "user", j.User, "attempt", n+1)
	w.process(ctx, j, next, n+1)
}

// report writes a result for the courier.
func (w *Worker) report(r *job.Result) {
	data, err := r.Marshal()
	if err != nil {
		w.log.Error("couldn't encode result", "job", r.Job, "err", err)
		return
	}
	if err := w.results.Put(r.FileName(), data); err != nil {
		w.log.Error("couldn't write result", "job", r.Job, "status", r.Status, "err", err)
	}
}

// finish reports the final result and forgets the claimed job. The
// result is kept in worker/final first, then written to results/, and
// only then is the claimed job removed: a crash at any point leaves the
// job claimed (run again at the next start) or its final result kept
// (written again by deliverKept, never worked out again), so a job gets
// one final result, or the same one twice, which the courier shows once.
// A full disk is waited out (alerted, retried) while Run runs: the
// claimed job stays, and nothing accepted is lost.
func (w *Worker) finish(j *job.Job, claimedAs string, r *job.Result) {
	data, err := r.Marshal()
	if err != nil {
		w.log.Error("couldn't encode result", "job", r.Job, "err", err)
		return
	}
	name := r.FileName()
	if !w.retry(j.ID, "keep the final result", func() error {
		return spool.WriteFile(w.results.Tmp, w.kept, name, data, 0o600, -1, true)
	}) {
		return
	}
	if !w.retry(j.ID, "write the final result", func() error { return w.putFinal(name, data) }) {
		return
	}
	switch r.Status {
	case job.StatusDone:
		audit.Event(w.log, audit.Finished, "job", j.ID, "video", j.Video, "format", j.Format, "file", r.File, "size", r.Size, "cached", r.Cached)
	case job.StatusCancelled:
		audit.Event(w.log, audit.Cancelled, "job", j.ID, "video", j.Video, "format", j.Format, "user", j.User)
	default:
		audit.Event(w.log, audit.Failed, "job", j.ID, "video", j.Video, "format", j.Format, "class", r.Class)
	}
	// The job directory of an attempt a crash cut short, if any (the
	// answer came from the store, or the job gave up).
	if err := os.RemoveAll(filepath.Join(w.layout.Work(), j.ID)); err != nil {
		w.log.Error("couldn't remove the job directory", "job", j.ID, "err", err)
	}
	if err := w.inbox.Claimed.Remove(claimedAs); err != nil {
		w.log.Error("couldn't remove finished job", "job", j.ID, "err", err)
		return
	}
	w.inbox.Claimed.Sync()
	if err := w.kept.Remove(name); err != nil {
		w.log.Error("couldn't remove a kept final result", "job", j.ID, "err", err)
	}
}

func resultsOutbox(tmp, results *spool.Dir) (*spool.Outbox, error) {
	gid, err := results.Group()
	if err != nil {
		return nil, err
	}
	// 0644: the courier, which reads results/, is not in the spool group
	// (it must not write incoming/); results/ (1730) lets no one else
	// in, and the receiver, in the group, gains nothing from a result.
	return &spool.Outbox{Tmp: tmp, Dst: results, GID: gid, Mode: 0o644}, nil
}

// OpenResults opens the outbox to the courier alone (for the exit alert).
func OpenResults(spoolDir string) (*spool.Outbox, error) {
	l := spool.Layout{Root: spoolDir}
	tmp, err := spool.OpenDir(l.Worker("tmp"))
	if err != nil {
		return nil, err
	}
	results, err := spool.OpenDir(l.Results())
	if err != nil {
		tmp.Close()
		return nil, err
	}
	return resultsOutbox(tmp, results)
}

// logEgress records the egress proxy's reports: each connection a
// download made, as an event, and each destination refused, as an event
// and an alert naming the job and video. They come from the downloader
// domain, so every value is cleaned and cut, and they cannot drown other
// alerts: a job's refusals alert at most maxEgressAlerts times (the rest
// are events), and refusals that name no job (no credentials: anyone who
// can reach the proxy's port) are summed up in one alert a minute.
func (w *Worker) logEgress(ctx context.Context) {
	ch := w.opt.Launcher.Egress()
	l := &egressLog{log: w.log, perJob: map[string]int{}}
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			l.minute()
		case e := <-ch:
			l.record(e)
		}
	}
}

// egressLog is logEgress's state.
type egressLog struct {
	log       *slog.Logger
	perJob    map[string]int // alerts raised this minute, by job
	anonymous int            // refusals naming no job, this minute
}

func (l *egressLog) record(e egress.Event) {
	attrs := []any{"job", audit.Clean(e.Job, 32), "video", audit.Clean(e.Video, 16),
		"host", audit.Clean(e.Host, 253), "port", e.Port, "addr", audit.Clean(e.Addr, 64)}
	switch {
	case e.Refused == "":
		audit.Event(l.log, audit.Egress, append(attrs, "up", e.Up, "down", e.Down)...)
	case e.Job == "":
		l.anonymous++
		audit.Event(l.log, audit.EgressDenied, append(attrs, "reason", audit.Clean(e.Refused, 200))...)
	case l.perJob[e.Job] < maxEgressAlerts:
		l.perJob[e.Job]++
		audit.Alert(l.log, audit.EgressDenied, append(attrs, "reason", audit.Clean(e.Refused, 200))...)
	default:
		audit.Event(l.log, audit.EgressDenied, append(attrs, "reason", audit.Clean(e.Refused, 200))...)
	}
}

// minute ends a minute: one alert sums up the refusals that named no job,
// and every job has its allowance of alerts again.
func (l *egressLog) minute() {
	if l.anonymous > 0 {
		audit.Alert(l.log, audit.EgressDenied, "reason", "requests without a job's credentials", "count", l.anonymous, "window", "1m")
		l.anonymous = 0
	}
	clear(l.perJob)
}

// maxEgressAlerts caps the alerts one job's refused destinations raise in
// a minute.
const maxEgressAlerts = 5

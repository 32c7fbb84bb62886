package worker

import (
	"context"
	"errors"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// task is one entry of the worker's queue: a job file to claim (name in
// incoming/), a job a previous run left claimed (recover), or a claimed
// job to run again (j set: it was parked behind a download that its
// requester cancelled).
type task struct {
	name    string // incoming name, or claimed name when recovering
	recover bool
	// preview is the job as read, not claimed, when it was queued (nil
	// if it could not be read: the claim then quarantines it). Cancel
	// finds queued jobs by it.
	preview *job.Job

	j         *job.Job // a claimed job to process again
	claimedAs string
	attempt   int
	queued    time.Time // when it joined the queue (queueStats)
}

// maxQueue bounds the jobs waiting in memory. Past it, the watch waits
// for room (new files stay in incoming/ meanwhile): a flood of job files
// slows intake down, it cannot exhaust the worker's memory.
var maxQueue = 10000 // a variable for the test

// enqueue adds t at the end of the queue (or, with front, at its head),
// unless its name is queued or being handled already. A job that will
// wait for a slot gets a "queued" result with its place. With the queue
// full, it waits for room (a front task, from a running one, does not).
func (w *Worker) enqueue(ctx context.Context, t task, front bool) {
	if t.j == nil && t.preview == nil {
		t.preview = w.peek(t)
	}
	w.mu.Lock()
	for !front && len(w.queue) >= maxQueue && ctx.Err() == nil {
		w.cond.Wait()
	}
	if w.pending[t.name] || ctx.Err() != nil {
		w.mu.Unlock()
		return
	}
	w.pending[t.name] = true
	// Idle slots take the first jobs at once; the rest wait.
	position := len(w.queue) + 1 - (w.opt.Concurrency - w.busy)
	w.mu.Unlock()
	// Reported before the task can be taken: no "queued" after its
	// "started". A job already run under this ID (a redelivery) gets
	// none: its claim answers nothing either.
	if position > 0 && !front && t.preview != nil && position <= job.MaxPosition && !w.wasSeen(t.preview.ID) {
		r := t.preview.Result(job.StatusQueued, job.ClassNone)
		r.Position = position
		w.report(r)
	}
	t.queued = time.Now()
	w.mu.Lock()
	if front {
		w.queue = append([]task{t}, w.queue...)
	} else {
		w.queue = append(w.queue, t)
	}
	w.cond.Broadcast() // a slot waiting in next (enqueue waits on the same cond)
	w.mu.Unlock()
}

// wasSeen reports whether job id was claimed before (markSeen).
func (w *Worker) wasSeen(id string) bool {
	var st unix.Stat_t
	return unix.Fstatat(w.seen.FD(), id, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

// peek reads a queued job file without claiming it, for its reply token
// and requester; nil if it is not a job the claim would accept.
func (w *Worker) peek(t task) *job.Job {
	dir := w.inbox.In
	if t.recover {
		dir = w.inbox.Claimed
	}
	n, err := job.ParseName(t.name)
	if err != nil || (n.Kind != job.KindJob && n.Kind != job.KindClaimed) {
		return nil
	}
	data, err := spool.ReadFile(dir, t.name, w.inbox.UID, job.MaxRecordSize)
	if err != nil {
		return nil
	}
	j, err := job.ParseJob(data)
	if err != nil || j.ID != n.ID {
		return nil
	}
	return j
}

// next takes the first task of the queue, waiting for one; false when ctx
// has ended.
func (w *Worker) next(ctx context.Context) (task, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.queue) == 0 && ctx.Err() == nil {
		w.cond.Wait()
	}
	if ctx.Err() != nil {
		return task{}, false
	}
	t := w.queue[0]
	w.queue[0] = task{}
	w.queue = w.queue[1:]
	w.busy++
	// Taken, not yet downloading: cancel still finds it here.
	if j := t.job(); j != nil && w.running[j.ID] == nil {
		w.running[j.ID] = &running{j: j}
	}
	if len(w.queue) == maxQueue-1 {
		w.cond.Broadcast() // room for a waiting enqueue
	}
	return t, true
}

// job returns the job t stands for, as far as it is known.
func (t task) job() *job.Job {
	if t.j != nil {
		return t.j
	}
	return t.preview
}

// done ends a task next gave. A file of the same name that came into
// incoming/ meanwhile (a redelivery under the same job ID, which the
// watch skipped: the name was pending) is queued now; otherwise it would
// wait for the next start. Claimed, it is answered as a duplicate.
func (w *Worker) done(t task) {
	w.mu.Lock()
	w.busy--
	delete(w.pending, t.name)
	if j := t.job(); j != nil {
		if r := w.running[j.ID]; r != nil && r.stop == nil {
			delete(w.running, j.ID)
		}
	}
	ctx := w.runCtx
	w.mu.Unlock()
	if t.j != nil || t.recover || ctx == nil {
		return // not a name in incoming/
	}
	var st unix.Stat_t
	if unix.Fstatat(w.inbox.In.FD(), t.name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		go w.enqueue(ctx, task{name: t.name}, false)
	}
}

// running is a job a slot has taken: cancel finds it here from the
// moment it leaves the queue (stop nil: not downloading yet; the job
// checks cancelled before it starts) until its download has returned
// (ended: too late to cancel, the file may be stored already).
type running struct {
	j         *job.Job
	stop      context.CancelFunc
	cancelled bool
	ended     bool
}

// startRunning registers j's download and returns its context, or nil
// when j was cancelled before it started.
func (w *Worker) startRunning(ctx context.Context, j *job.Job) context.Context {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.running[j.ID]
	if r != nil && r.cancelled {
		delete(w.running, j.ID)
		return nil
	}
	jctx, stop := context.WithCancel(ctx)
	w.running[j.ID] = &running{j: j, stop: stop}
	return jctx
}

// downloadEnded marks j's download as returned: a cancel from now on
// finds nothing to stop.
func (w *Worker) downloadEnded(j *job.Job) {
	w.mu.Lock()
	if r := w.running[j.ID]; r != nil {
		r.ended = true
	}
	w.mu.Unlock()
}

// stopRunning forgets j's download and reports whether it was cancelled.
func (w *Worker) stopRunning(j *job.Job) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.running[j.ID]
	delete(w.running, j.ID)
	if r == nil {
		return false
	}
	if r.stop != nil {
		r.stop()
	}
	return r.cancelled
}

// cancel stops the jobs req names that its requester may stop: queued
// ones are removed before they start, parked ones answered, running ones
// killed (their process group, by the launcher). It returns the outcome
// and how many it stopped.
func (w *Worker) cancel(req *job.Request) (job.Outcome, int) {
	matches := func(j *job.Job) bool {
		if req.Job != "" {
			return j.ID == req.Job
		}
		return j.Video == req.Video && j.User == req.User
	}
	// By user, not team: on Enterprise Grid a click may name another
	// workspace of the organization than the command did, and user IDs
	// are unique across it.
	mine := func(j *job.Job) bool { return j.User == req.User || req.Admin }
	found, refused := 0, 0
	var queued []task
	var parked []parkedJob
	w.mu.Lock()
	keep := w.queue[:0]
	for _, t := range w.queue {
		j := t.preview
		if t.j != nil {
			j = t.j
		}
		switch {
		case j == nil || !matches(j):
			keep = append(keep, t)
		case !mine(j):
			refused++
			keep = append(keep, t)
		default:
			queued = append(queued, t)
			delete(w.pending, t.name)
		}
	}
	clear(w.queue[len(keep):])
	w.queue = keep
	w.cond.Broadcast() // room for a waiting enqueue
	for key, ps := range w.inflight {
		kept := ps[:0]
		for _, p := range ps {
			switch {
			case !matches(p.j):
				kept = append(kept, p)
			case !mine(p.j):
				refused++
				kept = append(kept, p)
			default:
				parked = append(parked, p)
			}
		}
		w.inflight[key] = kept
	}
	for _, r := range w.running {
		switch {
		case !matches(r.j) || r.cancelled || r.ended:
		case !mine(r.j):
			refused++
		default:
			r.cancelled = true
			if r.stop != nil {
				r.stop()
			}
			found++
		}
	}
	w.mu.Unlock()

	for _, t := range queued {
		if w.finishQueued(t) {
			found++
		}
	}
	for _, p := range parked {
		w.finish(p.j, p.claimedAs, p.j.Result(job.StatusCancelled, job.ClassNone))
		found++
	}
	switch {
	case found > 0:
		return job.OutcomeCancelled, found
	case refused > 0:
		return job.OutcomeNotYours, 0
	}
	return job.OutcomeNotFound, 0
}

// finishQueued answers a queued task that was cancelled before it
// started: claimed (a job file is the receiver's until then), checked and
// reported cancelled like any finished job.
func (w *Worker) finishQueued(t task) bool {
	if t.j != nil {
		w.finish(t.j, t.claimedAs, t.j.Result(job.StatusCancelled, job.ClassNone))
		return true
	}
	claimedAs := t.name
	if !t.recover {
		claimedAs = job.ClaimedName(t.preview.ID, 1)
		_, err := w.inbox.Claim(t.name, claimedAs)
		var he *spool.HostileError
		switch {
		case errors.Is(err, spool.ErrGone):
			return false
		case errors.As(err, &he):
			audit.Alert(w.log, audit.Quarantined, "file", t.name, "reason", he.Reason)
			return false
		case err != nil:
			w.log.Error("couldn't claim a cancelled job", "file", t.name, "err", err)
			return false
		}
	}
	data, err := spool.ReadFile(w.inbox.Claimed, claimedAs, w.inbox.UID, job.MaxRecordSize)
	if err != nil {
		q := w.inbox.Quarantine(claimedAs)
		audit.Alert(w.log, audit.Quarantined, "file", claimedAs, "quarantine", q, "reason", err.Error())
		return false
	}
	// The bytes read now, not those peeked at: they may have changed.
	j, err := w.parse(t.preview.ID, claimedAs, data)
	if err != nil {
		return false
	}
	if j.User != t.preview.User || j.Team != t.preview.Team {
		q := w.inbox.Quarantine(claimedAs)
		audit.Alert(w.log, audit.Quarantined, "file", claimedAs, "quarantine", q, "reason", "job file changed while queued")
		return false
	}
	first, err := w.markSeen(j.ID)
	if err != nil {
		w.log.Error("couldn't record the job ID", "job", j.ID, "err", err)
	} else if !first {
		// A redelivery of a job run before: that one answered.
		audit.Event(w.log, audit.Duplicate, "job", j.ID, "video", j.Video)
		w.inbox.Claimed.Remove(claimedAs)
		w.inbox.Claimed.Sync()
		return false
	}
	w.finish(j, claimedAs, j.Result(job.StatusCancelled, job.ClassNone))
	return true
}

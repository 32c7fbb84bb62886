package worker

import (
	"errors"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// request handles a request file at once, ahead of the queue: a cancel
// must reach a job before it starts, and a list or send waits for no
// download. name is in incoming/, or claimed/ when recovering.
//
// The worker acts on a cancel and forwards every request, re-encoded and
// with a cancel's outcome, to the courier, which answers the user its
// reply token names. A request is answered once: its ID is marked seen
// like a job's (a Socket Mode redelivery has the same ID).
func (w *Worker) request(name string, recovering bool) {
	n, err := job.ParseName(name)
	if err != nil || n.Kind != job.KindRequest {
		return
	}
	if !recovering {
		_, err := w.inbox.Claim(name, name)
		var he *spool.HostileError
		switch {
		case errors.Is(err, spool.ErrGone):
			return
		case errors.As(err, &he):
			audit.Alert(w.log, audit.Quarantined, "file", name, "reason", he.Reason)
			return
		case err != nil:
			w.log.Error("couldn't claim request", "file", name, "err", err)
			return
		}
	}
	quarantine := func(reason string) {
		q := w.inbox.Quarantine(name)
		audit.Alert(w.log, audit.Quarantined, "file", name, "quarantine", q, "reason", reason)
	}
	data, err := spool.ReadFile(w.inbox.Claimed, name, w.inbox.UID, job.MaxRecordSize)
	if err != nil {
		quarantine(err.Error())
		return
	}
	if inputHook != nil {
		inputHook(string(data))
	}
	req, err := job.ParseRequest(data)
	if err == nil && req.ID != n.ID {
		err = errors.New("file name does not match its content")
	}
	if err == nil && req.Outcome != job.OutcomeNone {
		err = errors.New("a request from the receiver has no outcome")
	}
	if err != nil {
		quarantine(err.Error())
		return
	}
	first, err := w.markSeen(req.ID)
	if err != nil {
		w.log.Error("couldn't record the request ID", "request", req.ID, "err", err)
	}
	attrs := []any{"request", req.ID, "kind", req.Kind, "team", req.Team, "user", req.User, "job", req.Job, "video", req.Video, "admin", req.Admin}
	switch {
	case err == nil && !first && !recovering:
		audit.Event(w.log, audit.Duplicate, attrs...)
	case req.Kind == job.RequestCancel:
		req.Outcome, req.Count = w.cancel(req)
		audit.Event(w.log, audit.Requested, append(attrs, "outcome", req.Outcome, "count", req.Count)...)
		w.forward(req)
	default:
		audit.Event(w.log, audit.Requested, attrs...)
		w.forward(req)
	}
	if err := w.inbox.Claimed.Remove(name); err != nil {
		w.log.Error("couldn't remove a handled request", "request", req.ID, "err", err)
	}
	w.inbox.Claimed.Sync()
}

// forward hands req to the courier.
func (w *Worker) forward(req *job.Request) {
	data, err := req.Marshal()
	if err == nil {
		err = w.results.Put(req.FileName(), data)
	}
	if err != nil {
		// The user is left without an answer: the admins hear of it.
		audit.Alert(w.log, audit.ReplyFailed, "request", req.ID, "kind", req.Kind, "user", req.User, "reason", "request_not_forwarded", "err", err.Error())
	}
}

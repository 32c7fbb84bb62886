package courier

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/reply"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// Requests are a user's commands about jobs rather than a video (list,
// send, cancel): the receiver writes them with a reply token sealed for
// the request's own ID, the worker forwards them into results/ (a cancel
// once it has acted on it, with its Outcome), and the courier answers
// each once, ephemerally, on the request's response_url.
//
// The record is the worker's word; the token is the receiver's. So the
// token must open for the record's ID, say it belongs to a request, and
// name the record's user; the answer is about the token's user (their
// history, their DM), never the record's. A token the worker kept cannot
// be used twice: the answer is counted (courier/replies/<id>.json)
// before it is made, and kept until the response_url has expired, after
// which the request is refused for its age.

// request handles the claimed request file name.
func (s *Service) request(ctx context.Context, name string, quarantine func(string)) {
	data, err := spool.ReadFile(s.inbox.Claimed, name, s.inbox.UID, job.MaxRecordSize)
	if err != nil {
		quarantine(err.Error())
		return
	}
	if inputHook != nil {
		inputHook(string(data))
	}
	q, err := job.ParseRequest(data)
	if err != nil {
		quarantine(err.Error())
		return
	}
	if q.FileName() != name {
		quarantine("file name does not match its content")
		return
	}
	info, err := s.sealer.Open(q.ID, q.Reply)
	switch {
	case err != nil:
		// Not sealed by the receiver for this request.
		quarantine(err.Error())
		return
	case !info.Request:
		// A job's token on a request record: the worker holds every job's
		// token, and would answer, upload or list as that job's user.
		quarantine("a job's reply token on a request")
		return
	case info.User == "" || info.User != q.User:
		quarantine("the request's user is not the one its token names")
		return
	case info.Kind != string(q.Kind) || info.Job != q.Job || info.Video != q.Video:
		// The worker changed what was asked: a list made a send, or
		// another job named.
		quarantine("the request is not the one its token seals")
		return
	case q.Kind == job.RequestCancel && q.Outcome == job.OutcomeNone:
		quarantine("a cancel the worker did not act on")
		return
	}
	s.inbox.Claimed.Remove(name)
	s.answer(ctx, q, info)
}

// answer acts on request q (list, send) and answers it on its
// response_url, once.
func (s *Service) answer(ctx context.Context, q *job.Request, info *reply.Info) {
	attrs := []any{"request", q.ID, "kind", q.Kind, "user", info.User}
	if age := s.opt.Now().Sub(time.Unix(info.Created, 0)); age > ResponseURLLifetime-time.Minute {
		// Its response_url is dead, and its count may be swept: a
		// request this old is not acted on either.
		audit.Event(s.log, audit.ReplyFailed, append(attrs, "reason", "response_url_expired", "age_s", int(age.Seconds()))...)
		return
	}
	if !s.opt.ResponseURLAllowed(info.URL) {
		audit.Alert(s.log, audit.ReplyFailed, append(attrs, "reason", "response_url_not_allowed")...)
		return
	}
	b, err := s.loadBudget(q.ID)
	if err != nil {
		s.log.Error("couldn't read reply budget", "request", q.ID, "err", err)
		return
	}
	if b.Posts > 0 || b.Final {
		// A request is answered once: this one was replayed.
		audit.Alert(s.log, audit.ReplyFailed, append(attrs, "reason", "request_replayed")...)
		return
	}
	// Count the answer before acting and posting: a crash must not let a
	// request be acted on (an upload) twice.
	b.Posts, b.Final = 1, true
	if err := s.saveBudget(q.ID, b); err != nil {
		s.log.Error("couldn't save reply budget", "request", q.ID, "err", err)
		return
	}
	text := s.requestText(q, info)
	if err := s.notifier.Post(ctx, info.URL, text); err != nil {
		audit.Event(s.log, audit.ReplyFailed, append(attrs, "reason", err.Error())...)
		return
	}
	audit.Event(s.log, audit.Replied, attrs...)
}

// requestText acts on q for the token's user and returns the answer.
func (s *Service) requestText(q *job.Request, info *reply.Info) string {
	switch q.Kind {
	case job.RequestList:
		h, err := s.userHistory(info.User)
		if err != nil {
			s.log.Error("couldn't read a history", "user", info.User, "err", err)
			return ":x: I couldn't read your jobs (the admins can see why in the log)."
		}
		return listText(h, s.opt.Command, s.uploadsOn())
	case job.RequestSend:
		return s.sendText(q, info)
	default:
		return cancelText(q, s.opt.Command)
	}
}

// sendText answers a send request: the job must be one of the token's
// user's, and saved.
func (s *Service) sendText(q *job.Request, info *reply.Info) string {
	h, err := s.userHistory(info.User)
	if err != nil {
		s.log.Error("couldn't read a history", "user", info.User, "err", err)
		return ":x: I couldn't read your jobs (the admins can see why in the log)."
	}
	i := slices.IndexFunc(h.Jobs, func(e historyEntry) bool { return e.Job == q.Job })
	if i < 0 {
		audit.Event(s.log, audit.UploadRefused, "job", q.Job, "user", info.User, "via", "request", "reason", "not_in_history")
		return fmt.Sprintf("Job `%s` is not one of your last %d jobs (`%s list` shows them).", q.Job, historyLen, s.opt.Command)
	}
	e := h.Jobs[i]
	if e.State != stateSaved {
		audit.Event(s.log, audit.UploadRefused, "job", q.Job, "user", info.User, "via", "request", "reason", "not_saved")
		return fmt.Sprintf("Job `%s` is %s, not saved: there is no file to send.", q.Job, e.State)
	}
	text, _ := s.prepareUpload(info.User, storedFile{job: e.Job, video: e.Video, format: e.Format, name: e.File, title: e.Title, size: e.Size}, "request")
	return text
}

// cancelText answers a cancel the worker has acted on.
func cancelText(q *job.Request, command string) string {
	what := fmt.Sprintf("job `%s`", q.Job)
	if q.Job == "" {
		what = fmt.Sprintf("your jobs of `%s`", q.Video)
	}
	switch q.Outcome {
	case job.OutcomeCancelled:
		if q.Count > 1 {
			return fmt.Sprintf(":no_entry_sign: Cancelled %d jobs (%s).", q.Count, what)
		}
		return fmt.Sprintf(":no_entry_sign: Cancelled %s.", what)
	case job.OutcomeNotYours:
		return fmt.Sprintf("Job `%s` is not yours: only the person who asked for it, or an admin, can cancel it.", q.Job)
	default:
		return fmt.Sprintf("Nothing to cancel: %s is not waiting or running (it may have ended; `%s list` shows your jobs).", what, command)
	}
}

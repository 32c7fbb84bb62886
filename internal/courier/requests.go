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
// each once, ephemerally, on the request's response_url: with a bot
// token, the answer to a list or a send goes into the DM of the user the
// token names, and the response_url gets only a note that says so.
//
// The record is the worker's word; the token is the receiver's. So the
// token must open for the record's ID, say it belongs to a request, and
// name the record's user; the answer is about the token's user (their
// history, their DM), never the record's. A token the worker kept cannot
// be used twice: the answer is counted (courier/replies/<id>.json)
// before it is made, and kept until the response_url has expired, after
// which the request is refused for its age.
//
// The checks are made where the record is read; acting on a request and
// answering it are done by the goroutine of requests and DM notices
// (runMessages), through a queue of requestQueue: a full queue drops the
// request (its record too: it was neither counted nor acted on), so no
// response_url, however slow, and no number of requests holds up the
// results.

// The lane of requests and notices: how many may wait.
const (
	requestQueue = 32
	noticeQueue  = 64
)

// dmNote is what the response_url of a request answered in the DM gets:
// nothing of the answer, which is for the token's user alone.
const dmNote = "I've answered in our direct messages."

// requestTask is a checked request, for runMessages; name is its claimed
// file, removed when it is taken.
type requestTask struct {
	name string
	q    *job.Request
	info *reply.Info
}

// notice is a message for user's DM about job's upload (a refusal after
// "/ytkeep <link> send", Slack not taking the file).
type notice struct {
	user, job, text string
}

// request handles the claimed request file name.
func (s *Service) request(name string, quarantine func(string)) {
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
	// Answered on the lane of requests; the record stays claimed until
	// then (a restart answers it).
	select {
	case s.requests <- requestTask{name: name, q: q, info: info}:
	default:
		s.inbox.Claimed.Remove(name)
		audit.Event(s.log, audit.ReplyFailed, "request", q.ID, "kind", q.Kind, "user", info.User, "reason", "request_dropped", "code", "queue_full")
	}
}

// notify queues text for user's DM on the lane of requests and notices,
// never behind an upload; a full queue drops it.
func (s *Service) notify(user, jobID, text string) {
	select {
	case s.notices <- notice{user: user, job: jobID, text: text}:
	default:
		audit.Event(s.log, audit.ReplyFailed, "job", jobID, "via", "dm", "reason", "upload_notice_dropped", "code", "queue_full")
	}
}

// runMessages answers the queued requests and posts the queued notices,
// notices first, one at a time, until ctx ends; what is still queued
// then is dropped (a request's record stays claimed, for the next
// start).
func (s *Service) runMessages(ctx context.Context) {
	for ctx.Err() == nil {
		select {
		case n := <-s.notices:
			s.postNotice(ctx, n)
			continue
		default:
		}
		select {
		case <-ctx.Done():
			return
		case n := <-s.notices:
			s.postNotice(ctx, n)
		case t := <-s.requests:
			// Taken: from now on it is answered or dropped, never
			// handled again (a crash before its count loses it).
			s.inbox.Claimed.Remove(t.name)
			s.answer(ctx, t.q, t.info)
		}
	}
}

// postNotice posts n into its user's DM.
func (s *Service) postNotice(ctx context.Context, n notice) {
	pctx, cancel := context.WithTimeout(ctx, postWait)
	defer cancel()
	if err := s.postDM(pctx, n.user, n.text); err != nil {
		audit.Event(s.log, audit.ReplyFailed, "job", n.job, "via", "dm", "reason", "upload_notice_failed", "code", errorCode(err))
	}
}

// answer acts on request q (list, send) and answers it, once: on its
// response_url, or, for a list or a send with a bot token, in the DM of
// the token's user, with a note on the response_url.
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
	if s.opt.Slack != nil && q.Kind != job.RequestCancel {
		// The response_url is the receiver's word: a compromised one can
		// seal a request of any user with its own. The user's jobs go
		// only where the bot token's DM with that user is.
		pctx, cancel := context.WithTimeout(ctx, postWait)
		err := s.postDM(pctx, info.User, text)
		cancel()
		if err != nil {
			audit.Event(s.log, audit.ReplyFailed, append(attrs, "via", "dm", "reason", "answer_failed", "code", errorCode(err))...)
			text = ":x: I couldn't answer in our direct messages: please try again in a few minutes."
		} else {
			audit.Event(s.log, audit.Replied, append(attrs, "via", "dm")...)
			text = dmNote
		}
	}
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

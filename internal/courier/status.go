package courier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/reply"
	"github.com/ytkeep/ytkeep/internal/slackapi"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// With a bot token, each job gets one status message in the requester's
// DM with the app: posted at its first record, updated in place by the
// next ones. Unlike a response_url, which Slack accepts for 30 minutes,
// the DM takes the final message however long the job ran.
//
// The final message is never dropped: its result stays claimed (in
// courier/claimed, so a courier restart finds it) until Slack has taken
// it, retried with backoff through outages and rate limits, for
// Options.FinalTTL after the command; then an alert. A message Slack
// refuses for good (the user has left, the DM is closed to apps) falls
// back to the response_url while it is valid. Intermediate updates are
// dropped when Slack does not take them at once.
//
// A status record (courier/status/<job>.json: the DM and the message's
// ts) is written once the message is posted: a crash between the post and
// the record makes the next record post a second message. The record
// also marks the final message, after which the job's records are refused
// (a replayed result) with an alert.

// statusRecord is a job's status message.
type statusRecord struct {
	Channel string `json:"c"`
	TS      string `json:"t"`
	Final   bool   `json:"f"`
	// Sum is the final result's digest (with Final, see finalSum): the
	// same final result again is a repeat the worker makes after a crash.
	Sum string `json:"s,omitempty"`
}

// postWait bounds one attempt to post or update a status message.
const postWait = 30 * time.Second

// statusMessage is the status message for r (or, for a running job, its
// progress p): the text as posted to a response_url, in a section block,
// with the job's ID below it and its buttons (actions); maxUpload is the
// largest file the courier uploads (0: none): its cap, or a whole day's
// quota when that is less.
func statusMessage(info *reply.Info, r *job.Result, p *job.Progress, maxUpload int64) slackapi.Message {
	text := Message(info, r)
	if p != nil && !r.Status.Final() {
		text = progressText(info, p)
	}
	blocks := []slack.Block{
		slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, text, false, false), nil, nil),
		slack.NewContextBlock("", slack.NewTextBlockObject(slack.MarkdownType,
			fmt.Sprintf("Job `%s` · https://www.youtube.com/watch?v=%s", r.Job, info.Video), false, false)),
	}
	if a := actions(r, maxUpload); a != nil {
		blocks = append(blocks, a)
	}
	return slackapi.Message{Text: text, Blocks: blocks}
}

// actions are the status message's buttons, each carrying the job's ID
// (the receiver turns a click into a request, job.ActionCancel or
// job.ActionSend): Cancel while the job waits or downloads, with a
// confirmation; "Send me the file" once it is saved, if the courier
// uploads a file of its size. Nil when there is none.
func actions(r *job.Result, maxUpload int64) slack.Block {
	plain := func(s string) *slack.TextBlockObject {
		return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
	}
	switch {
	case r.Status == job.StatusQueued || r.Status == job.StatusStarted:
		confirm := slack.NewConfirmationBlockObject(plain("Cancel this download?"),
			plain("The job stops and nothing is kept."), plain("Cancel it"), plain("Keep it")).WithStyle(slack.StyleDanger)
		return slack.NewActionBlock("ytkeep_job",
			slack.NewButtonBlockElement(job.ActionCancel, r.Job, plain("Cancel")).WithStyle(slack.StyleDanger).WithConfirm(confirm))
	case r.Status == job.StatusDone && maxUpload > 0 && r.Size > 0 && r.Size <= maxUpload:
		return slack.NewActionBlock("ytkeep_job", slack.NewButtonBlockElement(job.ActionSend, r.Job, plain("Send me the file")))
	}
	return nil
}

// progressText is a running download's line: what part, of how much, how
// fast, how long still; what the worker did not know is left out.
func progressText(info *reply.Info, p *job.Progress) string {
	t := fmt.Sprintf(":hourglass_flowing_sand: Downloading `%s` (%s)… %d%%", info.Video, info.Format, p.Percent)
	if p.Total > 0 {
		t += " of " + formatSize(p.Total)
	}
	if p.Speed > 0 {
		t += ", " + formatSize(p.Speed) + "/s"
	}
	if p.ETA > 0 {
		t += ", about " + formatDuration(p.ETA) + " left"
	}
	return t
}

func (s *Service) loadStatus(id string) (*statusRecord, error) {
	data, err := spool.ReadFile(s.status, id+".json", -1, 1024)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r statusRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (s *Service) saveStatus(id string, r *statusRecord) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return spool.WriteFile(s.tmp, s.status, id+".json", data, 0o600, -1, true)
}

// placeholder is the message a final result's status message is posted
// as, before it is updated to the result (see postStatus).
func placeholder(info *reply.Info, r *job.Result) slackapi.Message {
	text := fmt.Sprintf(":mag: Looking up `%s` (%s)…", info.Video, info.Format)
	return slackapi.Message{Text: text, Blocks: []slack.Block{
		slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, text, false, false), nil, nil),
		slack.NewContextBlock("", slack.NewTextBlockObject(slack.MarkdownType, fmt.Sprintf("Job `%s`", r.Job), false, false)),
	}}
}

// finalSum is the digest of r's canonical bytes if it is final, else "":
// the worker writes a kept final result again byte for byte (a repeat);
// anything else after a final result, even of the same status, is not.
func finalSum(r *job.Result) string {
	if !r.Status.Final() {
		return ""
	}
	data, err := r.Marshal()
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}

// postStatus posts or updates the status message of r's job.
func (s *Service) postStatus(ctx context.Context, r *job.Result, info *reply.Info, p *job.Progress, rec *statusRecord) error {
	// The button offers only a file that can be sent: within the cap and
	// within a whole day's quota (a larger one never fits).
	maxUpload := int64(0)
	if s.uploadsOn() {
		maxUpload = min(s.opt.MaxUploadBytes, s.opt.UploadQuotaBytes)
	}
	msg := statusMessage(info, r, p, maxUpload)
	final := r.Status.Final()
	if rec != nil {
		err := s.opt.Slack.Update(ctx, rec.Channel, rec.TS, msg)
		var ae *slackapi.Error
		if err == nil {
			if final {
				rec.Final, rec.Sum = true, finalSum(r)
				if err := s.saveStatus(r.Job, rec); err != nil {
					s.log.Error("couldn't record a final status message", "job", r.Job, "err", err)
				}
				s.unsaved.Delete(r.Job)
			}
			return nil
		}
		if !errors.As(err, &ae) || (ae.Code != "message_not_found" && ae.Code != "cant_update_message") {
			return err
		}
		// Gone (deleted in Slack): post a new one.
	}
	ch, err := s.opt.Slack.OpenDM(ctx, info.User)
	if err != nil {
		return err
	}
	if final {
		// A final result is never a new message: a crash between a post
		// and its record would post it again at the restart (Slack's
		// chat.postMessage has no idempotency key). A placeholder is
		// posted and recorded first, then updated in place, which can be
		// repeated: whatever the crash, the job has one final message
		// (at worst, also a stray placeholder).
		ts, err := s.opt.Slack.Post(ctx, ch, placeholder(info, r))
		if err != nil {
			return err
		}
		rec := &statusRecord{Channel: ch, TS: ts}
		if err := s.saveStatus(r.Job, rec); err != nil {
			// A full disk: go on with the message in hand, kept in
			// memory for a retry, which updates it rather than
			// posting another placeholder.
			s.log.Error("couldn't record a status message", "job", r.Job, "err", err)
			s.unsaved.Store(r.Job, rec)
		}
		if err := s.opt.Slack.Update(ctx, ch, ts, msg); err != nil {
			return err
		}
		final := &statusRecord{Channel: ch, TS: ts, Final: true, Sum: finalSum(r)}
		if err := s.saveStatus(r.Job, final); err != nil {
			s.log.Error("couldn't record a final status message", "job", r.Job, "err", err)
		}
		s.unsaved.Delete(r.Job)
		return nil
	}
	ts, err := s.opt.Slack.Post(ctx, ch, msg)
	if err != nil {
		return err
	}
	if err := s.saveStatus(r.Job, &statusRecord{Channel: ch, TS: ts, Final: final, Sum: finalSum(r)}); err != nil {
		s.log.Error("couldn't record a status message: its next update posts another", "job", r.Job, "err", err)
	}
	return nil
}

// deliver brings r to its job's status message. It reports whether the
// claimed result is done with (false: keep it, retry later), and whether
// the message is in the DM.
func (s *Service) deliver(ctx context.Context, name string, r *job.Result, info *reply.Info) (done, posted bool) {
	return s.deliverWithin(ctx, name, r, info, nil, postWait)
}

// tooOld reports whether a record with info's token comes long after
// its job could have ended (tokenGrace).
func (s *Service) tooOld(info *reply.Info) bool {
	return s.opt.Now().Sub(time.Unix(info.Created, 0)) > s.opt.FinalTTL+tokenGrace
}

// deliverWithin is deliver, each attempt bounded by wait; p, when not
// nil, is the running job's progress to show.
func (s *Service) deliverWithin(ctx context.Context, name string, r *job.Result, info *reply.Info, p *job.Progress, wait time.Duration) (done, posted bool) {
	lock := s.jobLock(r.Job)
	lock.Lock()
	defer lock.Unlock()
	attrs := []any{"job", r.Job, "status", r.Status, "via", "dm"}
	if p != nil {
		attrs = append(attrs, "kind", "progress", "percent", p.Percent)
	}
	if age := s.opt.Now().Sub(time.Unix(info.Created, 0)); age > s.opt.FinalTTL+tokenGrace {
		// Long after its job could have ended: a record the worker kept
		// (an honest one writes none this late), replayed to write to
		// the requester again.
		audit.Alert(s.log, audit.ReplyFailed, append(attrs, "reason", "token_expired", "age_h", int(age.Hours()))...)
		return true, false
	}
	rec, err := s.loadStatus(r.Job)
	if err != nil {
		s.log.Error("couldn't read a status record", "job", r.Job, "err", err)
		rec = nil
	}
	if rec == nil {
		if v, ok := s.unsaved.Load(r.Job); ok {
			rec = v.(*statusRecord)
		}
	}
	if rec != nil && rec.Final {
		switch {
		case r.Status.Final() && rec.Sum != "" && finalSum(r) == rec.Sum:
			// The worker writes its final result again when it died
			// before it could forget the job (worker.finish): shown once.
			audit.Event(s.log, audit.ReplyFailed, append(attrs, "reason", "repeat")...)
		case r.Status.Final():
			// An honest worker writes no other final result.
			audit.Alert(s.log, audit.ReplyFailed, append(attrs, "reason", "result_after_final")...)
		}
		// An update queued before the final message went out: stale.
		return true, false
	}
	pctx, cancel := context.WithTimeout(ctx, wait)
	err = s.postStatus(pctx, r, info, p, rec)
	cancel()
	if err == nil {
		audit.Event(s.log, audit.Replied, attrs...)
		return true, true
	}
	var ae *slackapi.Error
	code := "error"
	permanent := false
	if errors.As(err, &ae) {
		code, permanent = ae.Code, ae.Permanent
	}
	attrs = append(attrs, "code", code)
	switch {
	case !r.Status.Final():
		audit.Event(s.log, audit.ReplyFailed, append(attrs, "reason", "update_dropped")...)
		return true, false
	case permanent:
		// The DM will not take it: the response_url, if still valid.
		audit.Alert(s.log, audit.ReplyFailed, append(attrs, "reason", "dm_refused")...)
		s.reply(ctx, r, info)
		return true, false
	case s.opt.Now().Sub(time.Unix(info.Created, 0)) > s.opt.FinalTTL:
		audit.Alert(s.log, audit.ReplyFailed, append(attrs, "reason", "final_undelivered", "after", s.opt.FinalTTL.String())...)
		return true, false
	}
	next := s.retries.later(name, s.opt.Now())
	audit.Event(s.log, audit.ReplyFailed, append(attrs, "reason", "will_retry", "in_s", int(next.Seconds()))...)
	return false, false
}

// tokenGrace is how much older than FinalTTL a job's token may be: no
// honest record comes later (the job's timeout and retries are far
// shorter), and a status record is kept at least that long (sweepStatus).
const tokenGrace = time.Hour

// jobLock returns the lock of job id's status message: one post or
// update at a time per job; other jobs' go on.
func (s *Service) jobLock(id string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(id))
	return &s.jobLocks[h.Sum32()%uint32(len(s.jobLocks))]
}

// Intermediate updates (a job's "started" record, later its progress)
// are handed to one goroutine through a short queue and never waited
// for: a full queue, a spent budget or a Slack that does not answer
// within interWait (Options.UpdateWait) drops them. So no number of them (a compromised
// worker may write any, for every token it has kept) delays a final
// message, which the Watch goroutine delivers itself.
const (
	interQueue  = 64
	interWait   = 3 * time.Second
	interBudget = 30 // updates a minute, all jobs together (chat.update allows 50)
)

type update struct {
	r    *job.Result
	info *reply.Info
	p    *job.Progress // nil: the job's start
}

// intermediate queues an intermediate update, or drops it.
func (s *Service) intermediate(r *job.Result, info *reply.Info, p *job.Progress) {
	select {
	case s.updates <- update{r, info, p}:
	default:
		audit.Event(s.log, audit.ReplyFailed, "job", r.Job, "status", r.Status, "via", "dm", "reason", "update_dropped", "code", "queue_full")
	}
}

// runIntermediates delivers the queued intermediate updates.
func (s *Service) runIntermediates(ctx context.Context) {
	var sent []time.Time // in the last minute
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-s.updates:
			now := s.opt.Now()
			sent = slices.DeleteFunc(sent, func(t time.Time) bool { return now.Sub(t) >= time.Minute })
			if len(sent) >= interBudget {
				audit.Event(s.log, audit.ReplyFailed, "job", u.r.Job, "status", u.r.Status, "via", "dm", "reason", "update_dropped", "code", "budget")
				continue
			}
			sent = append(sent, now)
			s.deliverWithin(ctx, "", u.r, u.info, u.p, s.opt.UpdateWait)
		}
	}
}

// retryQueue is when each kept final result is tried again: after base,
// then twice as long each time, up to maxRetryWait. Memory only: after a
// restart, every claimed result is tried at once.
type retryQueue struct {
	base time.Duration
	mu   sync.Mutex
	due  map[string]retryState
}

type retryState struct {
	at    time.Time
	tries int
}

const maxRetryWait = 10 * time.Minute

// later schedules name's next attempt and returns the wait.
func (q *retryQueue) later(name string, now time.Time) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	st := q.due[name]
	d := q.base << min(st.tries, 16)
	if d > maxRetryWait || d <= 0 {
		d = maxRetryWait
	}
	q.due[name] = retryState{at: now.Add(d), tries: st.tries + 1}
	return d
}

func (q *retryQueue) forget(name string) {
	q.mu.Lock()
	delete(q.due, name)
	q.mu.Unlock()
}

// ready returns the names due at now.
func (q *retryQueue) ready(now time.Time) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var names []string
	for n, st := range q.due {
		if !now.Before(st.at) {
			names = append(names, n)
		}
	}
	return names
}

// runRetries tries the kept final results again when they are due.
func (s *Service) runRetries(ctx context.Context) {
	t := time.NewTicker(max(s.opt.RetryBase/2, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, n := range s.retries.ready(s.opt.Now()) {
			s.handleClaimed(ctx, n)
		}
	}
}

// sweepStatus deletes the status records of jobs older than FinalTTL
// and tokenGrace: a record's time is never before its job's, so no
// record of a job whose token deliver still accepts is swept.
func (s *Service) sweepStatus() {
	names, err := s.status.Names()
	if err != nil {
		return
	}
	for _, n := range names {
		var st unix.Stat_t
		if unix.Fstatat(s.status.FD(), n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil &&
			s.opt.Now().Sub(time.Unix(st.Mtim.Sec, 0)) > s.opt.FinalTTL+tokenGrace {
			s.status.Remove(n)
		}
	}
}

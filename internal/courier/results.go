package courier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/reply"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// MaxPosts is Slack's limit of posts to one response_url.
const MaxPosts = 5

// ResponseURLLifetime is how long Slack accepts posts to a response_url.
const ResponseURLLifetime = 30 * time.Minute

// budget counts the posts made to one job's response_url. It is written
// before each post, and kept until the response_url has expired, so that
// neither a crash nor a replayed result can exceed Slack's limit.
type budget struct {
	Posts int  `json:"posts"`
	Final bool `json:"final"`
	// Sum is the final result's digest (see statusRecord.Sum).
	Sum string `json:"sum,omitempty"`
}

func (s *Service) loadBudget(id string) (*budget, error) {
	data, err := spool.ReadFile(s.replies, id+".json", -1, 1024)
	if errors.Is(err, unix.ENOENT) {
		return &budget{}, nil
	}
	if err != nil {
		return nil, err
	}
	var b budget
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

func (s *Service) saveBudget(id string, b *budget) error {
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	return spool.WriteFile(s.tmp, s.replies, id+".json", data, 0o600, -1, true)
}

// sweepBudgets deletes the post counts of expired response URLs.
func (s *Service) sweepBudgets() {
	names, err := s.replies.Names()
	if err != nil {
		return
	}
	for _, n := range names {
		var st unix.Stat_t
		if unix.Fstatat(s.replies.FD(), n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil &&
			s.opt.Now().Sub(time.Unix(st.Mtim.Sec, 0)) > ResponseURLLifetime+time.Minute {
			s.replies.Remove(n)
		}
	}
}

// RunResults replies to results until ctx ends: first those claimed before
// a crash, then those waiting, then each new one as inotify reports it.
// It returns once the goroutines it started have ended.
func (s *Service) RunResults(ctx context.Context) error {
	claimed, err := s.inbox.Claimed.Names()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		t := time.NewTicker(5 * time.Minute)
		defer t.Stop()
		for {
			s.sweepBudgets()
			s.sweepStatus()
			s.sweepQuota()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	// Requests are answered, and DM notices posted, on a goroutine of
	// their own: a slow response_url never holds up a result.
	wg.Go(func() { s.runMessages(ctx) })
	if s.opt.Slack != nil {
		wg.Go(func() { s.runRetries(ctx) })
		wg.Go(func() { s.runIntermediates(ctx) })
		wg.Go(func() { s.runUploads(ctx) })
	}
	for _, n := range claimed {
		s.handleClaimed(ctx, n)
	}
	return spool.Watch(ctx, s.inbox.In, func(name string) bool {
		s.handleResult(ctx, name)
		return true
	})
}

// handleResult claims one result file and replies to it.
func (s *Service) handleResult(ctx context.Context, name string) {
	if !validResultName(name) {
		q := s.inbox.Reject(name)
		audit.Alert(s.log, audit.Quarantined, "file", name, "quarantine", q, "reason", "not a result file name")
		return
	}
	_, err := s.inbox.Claim(name, name)
	if errors.Is(err, spool.ErrGone) {
		return
	}
	var he *spool.HostileError
	if errors.As(err, &he) {
		audit.Alert(s.log, audit.Quarantined, "file", name, "reason", he.Reason)
		return
	}
	if err != nil {
		s.log.Error("couldn't claim result", "file", name, "err", err)
		return
	}
	s.handleClaimed(ctx, name)
}

func validResultName(name string) bool {
	n, err := job.ParseName(name)
	return err == nil && (n.Kind == job.KindResult || n.Kind == job.KindAlert || n.Kind == job.KindProgress || n.Kind == job.KindRequest)
}

// handleClaimed validates a claimed result, posts it and removes it
// (or, for a final status message Slack did not take, keeps it for a
// retry). Whatever ends the file ends its retries.
func (s *Service) handleClaimed(ctx context.Context, name string) {
	if !s.handleKept(ctx, name) {
		s.retries.forget(name)
	}
}

// handleKept is handleClaimed; it reports whether the file is kept.
func (s *Service) handleKept(ctx context.Context, name string) (kept bool) {
	quarantine := func(reason string) {
		q := s.inbox.Quarantine(name)
		audit.Alert(s.log, audit.Quarantined, "file", name, "quarantine", q, "reason", reason)
	}
	if n, err := job.ParseName(name); err == nil && n.Kind == job.KindAlert {
		s.relayAlert(name, quarantine)
		return false
	} else if err == nil && n.Kind == job.KindProgress {
		s.progress(name, quarantine)
		return false
	} else if err == nil && n.Kind == job.KindRequest {
		s.request(name, quarantine)
		return false
	}
	data, err := spool.ReadFile(s.inbox.Claimed, name, s.inbox.UID, job.MaxRecordSize)
	if err != nil {
		quarantine(err.Error())
		return false
	}
	if inputHook != nil {
		inputHook(string(data))
	}
	r, err := job.ParseResult(data)
	if err != nil {
		quarantine(err.Error())
		return false
	}
	if r.FileName() != name {
		quarantine("file name does not match its content")
		return false
	}
	info, err := s.sealer.Open(r.Job, r.Reply)
	if err != nil {
		// Not sealed by us for this job: forged, or moved from another job.
		quarantine(err.Error())
		return false
	}
	if info.Request {
		// A request's token (sealed for the request's ID) on a result
		// named after that ID: no job has it.
		quarantine("a request's reply token on a result")
		return false
	}
	if r.Status == job.StatusDone && !strings.HasPrefix(r.File, info.Video+"-"+string(info.Format)+".") {
		quarantine("stored file does not match the job")
		return false
	}
	advanced := true
	if !s.tooOld(info) {
		advanced = s.recordHistory(r, info)
	}
	if r.Status == job.StatusQueued && (!advanced || s.opt.Slack == nil || info.User == "") {
		// Its place in the queue: dropped when it came after the
		// download started, and without a DM (a response_url takes 5
		// posts, spent on the start and the end).
		s.inbox.Claimed.Remove(name)
		if !advanced {
			audit.Event(s.log, audit.ReplyFailed, "job", r.Job, "status", r.Status, "reason", "update_dropped", "code", "late")
		}
		return false
	}
	if s.opt.Slack != nil && info.User != "" {
		if !r.Status.Final() {
			// An intermediate update: handed over, never waited for.
			s.inbox.Claimed.Remove(name)
			s.intermediate(r, info, nil)
			return false
		}
		done, posted := s.deliver(ctx, name, r, info)
		if !done {
			return true
		}
		s.inbox.Claimed.Remove(name)
		if posted && r.Status == job.StatusDone && info.Send {
			s.sendAfterFinal(r, info)
		}
		return false
	}
	s.reply(ctx, r, info)
	s.inbox.Claimed.Remove(name)
	return false
}

// sendAfterFinal uploads a saved job's file into its requester's DM, as
// "/ytkeep <link> send" asked, once its final message is there; a
// refusal is said in the DM.
func (s *Service) sendAfterFinal(r *job.Result, info *reply.Info) {
	f := storedFile{job: r.Job, video: info.Video, format: info.Format, name: r.File, title: r.Title, size: r.Size}
	if text, queued := s.prepareUpload(info.User, f, "command"); !queued {
		s.notify(info.User, r.Job, text)
	}
}

// progress passes a download's progress to its job's status message, as
// an intermediate update (never waited for). Without a bot token it is
// dropped: a response_url takes 5 posts, spent on the start and the end.
func (s *Service) progress(name string, quarantine func(string)) {
	data, err := spool.ReadFile(s.inbox.Claimed, name, s.inbox.UID, job.MaxRecordSize)
	if err != nil {
		quarantine(err.Error())
		return
	}
	p, err := job.ParseProgress(data)
	if err != nil {
		quarantine(err.Error())
		return
	}
	if p.FileName() != name {
		quarantine("file name does not match its content")
		return
	}
	info, err := s.sealer.Open(p.Job, p.Reply)
	if err != nil {
		quarantine(err.Error())
		return
	}
	if info.Request {
		quarantine("a request's reply token on a progress record")
		return
	}
	s.inbox.Claimed.Remove(name)
	if s.opt.Slack != nil && info.User != "" {
		s.intermediate(&job.Result{V: job.Version, Job: p.Job, Status: job.StatusStarted, Reply: p.Reply}, info, p)
	}
}

// relayAlert passes on an alert the worker could not send itself (it has
// no network): logged as an alert here, so it reaches the admin channel
// through the courier's sink, marked as coming from the worker.
func (s *Service) relayAlert(name string, quarantine func(string)) {
	data, err := spool.ReadFile(s.inbox.Claimed, name, s.inbox.UID, job.MaxAlertSize)
	if err != nil {
		quarantine(err.Error())
		return
	}
	a, err := job.ParseAlert(data, "worker")
	if err != nil {
		quarantine(err.Error())
		return
	}
	attrs := []any{"from", a.Daemon, "at", a.Time.UTC().Format(time.RFC3339)}
	for k, v := range a.Attrs {
		if k != "from" && k != "at" && k != "event" && k != "alert" && k != "daemon" {
			attrs = append(attrs, k, v)
		}
	}
	audit.Alert(s.log, a.Event, attrs...)
	s.inbox.Claimed.Remove(name)
}

// reply posts a result to the job's response_url within Slack's budget.
func (s *Service) reply(ctx context.Context, r *job.Result, info *reply.Info) {
	attrs := []any{"job", r.Job, "status", r.Status}
	age := s.opt.Now().Sub(time.Unix(info.Created, 0))
	if age > ResponseURLLifetime-time.Minute {
		audit.Event(s.log, audit.ReplyFailed, append(attrs, "reason", "response_url_expired", "age_s", int(age.Seconds()))...)
		return
	}
	if !s.opt.ResponseURLAllowed(info.URL) {
		audit.Alert(s.log, audit.ReplyFailed, append(attrs, "reason", "response_url_not_allowed")...)
		return
	}
	b, err := s.loadBudget(r.Job)
	if err != nil {
		s.log.Error("couldn't read reply budget", "job", r.Job, "err", err)
		return
	}
	switch {
	case b.Final && !r.Status.Final():
		// An intermediate result handled after the final one (written
		// before it; the spool gives no order, and a restart handles
		// what it had claimed in directory order): too late to show.
		audit.Event(s.log, audit.ReplyFailed, append(attrs, "reason", "late")...)
		return
	case b.Final && b.Sum != "" && finalSum(r) == b.Sum:
		// The worker's repeat after a crash (worker.finish): shown once.
		audit.Event(s.log, audit.ReplyFailed, append(attrs, "reason", "repeat")...)
		return
	case b.Final:
		// An honest worker writes no other final result.
		audit.Alert(s.log, audit.ReplyFailed, append(attrs, "reason", "result_after_final")...)
		return
	case b.Posts >= MaxPosts:
		audit.Alert(s.log, audit.ReplyFailed, append(attrs, "reason", "post_budget_spent")...)
		return
	}
	// Count the post before making it: a crash must not let us exceed the
	// budget on restart.
	b.Posts++
	b.Final, b.Sum = r.Status.Final(), finalSum(r)
	if err := s.saveBudget(r.Job, b); err != nil {
		s.log.Error("couldn't save reply budget", "job", r.Job, "err", err)
		return
	}
	if err := s.notifier.Post(ctx, info.URL, Message(info, r)); err != nil {
		audit.Event(s.log, audit.ReplyFailed, append(attrs, "reason", err.Error())...)
		return
	}
	audit.Event(s.log, audit.Replied, append(attrs, "posts", b.Posts)...)
}

// Message is the text shown to the user for a result.
func Message(p *reply.Info, r *job.Result) string {
	switch r.Status {
	case job.StatusQueued:
		if r.Position <= 1 {
			return fmt.Sprintf(":clock3: Queued `%s` (%s) — next in line.", p.Video, p.Format)
		}
		return fmt.Sprintf(":clock3: Queued `%s` (%s) — %d ahead of it.", p.Video, p.Format, r.Position-1)
	case job.StatusStarted:
		return fmt.Sprintf(":hourglass_flowing_sand: Downloading `%s` (%s)…", p.Video, p.Format)
	case job.StatusCancelled:
		return fmt.Sprintf(":no_entry_sign: Cancelled. `%s` (%s) was not kept.", p.Video, p.Format)
	case job.StatusDone:
		title := inert(r.Title)
		if title == "" {
			title = p.Video
		}
		var details []string
		if r.Duration > 0 {
			details = append(details, formatDuration(r.Duration))
		}
		details = append(details, formatSize(r.Size))
		msg := fmt.Sprintf(":white_check_mark: Saved *%s* (%s) as `%s`.", title, strings.Join(details, ", "), r.File)
		if r.Cached {
			msg += " It was already on the server."
		}
		return msg
	default:
		return fmt.Sprintf(":x: Couldn't keep `%s` (%s): %s.", p.Video, p.Format, r.Class.Describe())
	}
}

// zwsp is U+200B ZERO WIDTH SPACE: invisible, and a word break for Slack.
const zwsp = "\u200b"

// inertReplacer makes untrusted text (a video title) show literally in
// Slack's mrkdwn, and act as nothing:
//
//   - &, < and > become entities (escape): no "<url|label>" link, no
//     "<!channel>", "<@U…>" or "<#C…>" mention;
//   - the mrkdwn markers * _ ~ ` (and their full-width forms, which Slack
//     also reads) become look-alike characters: no bold, italics, strike
//     or code. Slack has no escape for them, and a zero-width space next
//     to a marker makes formatting more likely, not less;
//   - a zero-width space follows every dot (also the full-width and
//     ideographic dots that IDNA reads as dots), colon, @ and #: no bare
//     URL ("https://…"), domain ("evil.example"), address, @here,
//     @channel, @everyone or #channel is left for Slack to link. The text
//     reads the same.
//
// Titles carry no zero-width or other format characters of their own
// (job.SanitizeTitle removes them), so these cannot be undone.
var inertReplacer = strings.NewReplacer(
	"&", "&amp;", "<", "&lt;", ">", "&gt;",
	"*", "\u2217", "\uff0a", "\ufe61", // ∗ asterisk operator, ﹡ small asterisk
	"_", "\u02cd", "\uff3f", "\u2e0f", // ˍ modifier letter low macron, ⸏ paragraphos
	"~", "\u223c", "\uff5e", "\u223c", // ∼ tilde operator
	"`", "\u02cb", "\uff40", "\u02cb", // ˋ modifier letter grave accent
	".", "."+zwsp, "\uff0e", "\uff0e"+zwsp, "\u3002", "\u3002"+zwsp, "\uff61", "\uff61"+zwsp,
	":", ":"+zwsp, "\uff1a", "\uff1a"+zwsp,
	"@", "@"+zwsp, "\uff20", "\uff20"+zwsp, "\ufe6b", "\ufe6b"+zwsp,
	"#", "#"+zwsp, "\uff03", "\uff03"+zwsp,
)

// inert returns untrusted text that Slack shows literally (inertReplacer).
func inert(s string) string { return inertReplacer.Replace(s) }

func formatDuration(sec int64) string {
	h, m, s := sec/3600, sec%3600/60, sec%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}

func formatSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

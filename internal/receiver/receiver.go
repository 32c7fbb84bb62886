// Package receiver turns verified Slack commands into durable jobs. It
// holds the Slack app's intake secret (the signing secret, or the
// app-level token) and never runs a downloader; the courier posts the
// results.
//
// Intake is independent of transport: HTTP (this package's Handler) and
// Socket Mode (RunSocket) both hand a *slackreq.Command to Service.Handle, which
// answers with the text of the ephemeral reply. A job is acknowledged only
// after it is durable in the spool.
package receiver

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/reply"
	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/spool"
	"github.com/ytkeep/ytkeep/internal/videourl"
)

// Options configure a Service.
type Options struct {
	SpoolDir string
	Command  string // e.g. /ytkeep
	// AppID is the Slack app whose commands are answered (api_app_id);
	// empty answers any app's (config.Config.Warnings announces it).
	AppID           string
	AllowedTeams    []string
	AllowedChannels []string // "*" allows any
	AllowedUsers    []string // "*" allows any
	// AllowedEnterprises, when not empty, are the only Enterprise Grid
	// organizations (enterprise_id) whose commands are answered.
	AllowedEnterprises []string
	// ResponseURLAllowed vets the response_url of a command (see
	// config.Config.ResponseURLAllowed).
	ResponseURLAllowed func(string) bool
	// StatusInDM says the courier posts each job's status in the
	// requester's DM (courier.status_messages): the acknowledgement says
	// so instead of warning that the response_url expires.
	StatusInDM bool
	// Admins may cancel anyone's job (receiver.admins).
	Admins []string
	// Uploads says the courier may upload files into DMs
	// (courier.max_upload_mb > 0): "send" is offered.
	Uploads bool
	// PerUserPerMinute caps accepted jobs per user and minute (default 20).
	PerUserPerMinute int
	Now              func() time.Time
	Logger           *slog.Logger
}

// Service handles commands. Its methods are safe for concurrent use.
type Service struct {
	opt      Options
	log      *slog.Logger
	layout   spool.Layout
	jobs     *spool.Outbox // receiver/tmp -> incoming
	sealer   *reply.Sealer
	refusals *refusalGate // unauthenticated requests: few alerts
	replays  *refusalGate // replayed requests Slack signed: a gate of their own
	signed   *signedGates // refusals of signed requests: few alerts

	teams, channels, users, enterprises, admins allowlist

	rateMu   sync.Mutex
	rate     *userWindow // accepted jobs by user
	requests *userWindow // requests (list, cancel, send) by user: in memory
	rateLog  *rateLog    // rate, on disk: it survives a restart
}

type allowlist struct {
	any bool
	ids map[string]bool
}

func newAllowlist(ids []string) allowlist {
	a := allowlist{ids: map[string]bool{}}
	for _, id := range ids {
		if id == "*" {
			a.any = true
		}
		a.ids[id] = true
	}
	return a
}

func (a allowlist) allows(id string) bool { return a.any || a.ids[id] }

// New opens the spool directories the receiver uses, and makes the reply
// key at the first start.
func New(opt Options) (*Service, error) {
	if opt.Logger == nil || opt.ResponseURLAllowed == nil {
		return nil, errors.New("receiver: incomplete options")
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.PerUserPerMinute == 0 {
		opt.PerUserPerMinute = 20
	}
	s := &Service{opt: opt, log: opt.Logger, layout: spool.Layout{Root: opt.SpoolDir},
		teams: newAllowlist(opt.AllowedTeams), channels: newAllowlist(opt.AllowedChannels),
		users: newAllowlist(opt.AllowedUsers), enterprises: newAllowlist(opt.AllowedEnterprises),
		admins: allowlist{ids: map[string]bool{}}, requests: newUserWindow(opt.Now(), nil),
		refusals: newRefusalGate(opt.Logger), replays: newRefusalGate(opt.Logger), signed: newSignedGates(opt.Logger)}
	for _, id := range opt.Admins {
		s.admins.ids[id] = true // never "*" (config.CheckReceiver)
	}
	paths := []string{s.layout.Receiver("tmp"), s.layout.Incoming(), s.layout.Receiver("")}
	d := make([]*spool.Dir, len(paths))
	var err error
	for i, p := range paths {
		if d[i], err = spool.OpenDir(p); err != nil {
			return nil, err
		}
	}
	gid, err := d[1].Group()
	if err != nil {
		return nil, err
	}
	s.jobs = &spool.Outbox{Tmp: d[0], Dst: d[1], GID: gid}
	if s.sealer, err = reply.Create(d[2]); err != nil {
		return nil, err
	}
	rl, live, problem := openRateLog(d[2], opt.Now(), time.Minute)
	if problem != nil {
		s.log.Error("the per-user limit's log: the limit may start afresh, or hold in memory only", "err", problem)
	}
	s.rateLog, s.rate = rl, newUserWindow(opt.Now(), live)
	return s, nil
}

// Handle decides on a verified command and returns the ephemeral reply.
// For a valid request it returns only after the job is durable.
func (s *Service) Handle(c *slackreq.Command) string { return s.handle(c, "") }

// handle is Handle; a request that may be delivered again under the same
// key (a Socket Mode envelope's ID) gets the job ID job.IDFor(key), so
// that a redelivery, even to a receiver started since, finds its job
// already queued instead of queueing a second one.
func (s *Service) handle(c *slackreq.Command, key string) string {
	who := []any{"team", c.TeamID, "user", c.UserID, "channel", c.ChannelID}
	refuse := func(reason, msg string, alert bool, extra ...any) string {
		attrs := append(append([]any{"reason", reason}, who...), extra...)
		if alert && s.signed.alertFirst(reason, c.TeamID, c.UserID) {
			audit.Alert(s.log, audit.Refused, attrs...)
		} else {
			audit.Event(s.log, audit.Refused, attrs...)
		}
		return msg
	}
	// Slack gives each app a signing secret of its own, so a correctly
	// signed command for another app (or none) means that app_id is set
	// wrong, and every command is refused until it is fixed, or that
	// someone who holds the secret signs commands: both for the admins.
	if s.opt.AppID != "" && c.APIAppID != s.opt.AppID {
		return refuse("other_app", "This command was sent to another Slack app, which this ytkeep does not answer. Tell your ytkeep admins.", true, "app", trunc(c.APIAppID, 40))
	}
	if c.Command != s.opt.Command {
		return refuse("unknown_command", fmt.Sprintf("This app only answers %s.", s.opt.Command), true, "command", trunc(c.Command, 40))
	}
	if !slackreq.ValidSlackID(c.TeamID) || !slackreq.ValidSlackID(c.UserID) || !slackreq.ValidSlackID(c.ChannelID) ||
		(c.EnterpriseID != "" && !slackreq.ValidSlackID(c.EnterpriseID)) {
		return refuse("malformed_ids", "This request is malformed.", true)
	}
	if len(s.opt.AllowedEnterprises) > 0 && !s.enterprises.allows(c.EnterpriseID) {
		return refuse("unauthorized_enterprise", "This organization is not allowed to use ytkeep.", true, "enterprise", c.EnterpriseID)
	}
	if !s.teams.allows(c.TeamID) {
		return refuse("unauthorized_team", "This workspace is not allowed to use ytkeep.", true)
	}
	if !s.users.allows(c.UserID) {
		return refuse("unauthorized_user", fmt.Sprintf("You are not allowed to use %s. Ask an admin to add your user ID (%s).", s.opt.Command, c.UserID), true)
	}
	if !s.channels.allows(c.ChannelID) {
		return refuse("unauthorized_channel", fmt.Sprintf("%s is not enabled in this channel. Ask an admin to add the channel ID (%s).", s.opt.Command, c.ChannelID), true)
	}
	if !s.opt.ResponseURLAllowed(c.ResponseURL) {
		return refuse("response_url", "This request is malformed.", true)
	}
	fields, err := videourl.Fields(c.Text)
	if err != nil {
		var pe *videourl.ParseError
		r := "bad_text"
		if errors.As(err, &pe) {
			r = pe.Reason
		}
		return refuse(r, "Sorry, "+err.Error()+". Usage: "+s.usage(), false)
	}
	if len(fields) == 0 || (len(fields) == 1 && strings.EqualFold(fields[0], "help")) {
		audit.Event(s.log, "help", who...)
		return s.help()
	}
	switch strings.ToLower(fields[0]) {
	case "list", "cancel", "send":
		return s.requestCommand(c, key, fields, refuse)
	}
	send := false
	if n := len(fields); n > 1 && strings.EqualFold(fields[n-1], "send") {
		if !s.opt.Uploads {
			return refuse("uploads_off", "Sending files into Slack is turned off on this server; the video is still kept on it. Usage: "+s.usage(), false)
		}
		send, fields = true, fields[:n-1]
	}
	if len(fields) > 2 {
		return refuse("usage", "Usage: "+s.usage(), false)
	}
	video, err := videourl.Parse(fields[0])
	if err != nil {
		var pe *videourl.ParseError
		hostile := errors.As(err, &pe) && pe.Hostile()
		r := "bad_url"
		if pe != nil {
			r = "bad_url_" + pe.Reason
		}
		return refuse(r, "Sorry, I can't use that link: "+err.Error()+".", hostile)
	}
	format := job.FormatBest
	if len(fields) == 2 {
		f, ok := job.ParseFormat(fields[1])
		if !ok {
			return refuse("bad_format", "Unknown format. Choose one of: "+formatList()+".", false)
		}
		format = f
	}
	if !s.allowRate(c.UserID) {
		return refuse("rate_limited", fmt.Sprintf("You have queued %d videos in the last minute; please wait a little.", s.opt.PerUserPerMinute), true)
	}
	id := job.NewID()
	if key != "" {
		id = job.IDFor(key)
	}
	j := &job.Job{V: job.Version, ID: id, Video: video, Format: format, Team: c.TeamID,
		User: c.UserID, Channel: c.ChannelID, Created: s.opt.Now().Unix()}
	err = s.enqueue(j, c.ResponseURL, send)
	if key != "" && errors.Is(err, fs.ErrExist) {
		// Queued by an earlier delivery, not yet claimed (once claimed,
		// the worker refuses a second run of the ID).
		audit.Event(s.log, audit.Duplicate, append([]any{"job", j.ID}, who...)...)
		return s.queued(j)
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		// Nothing was queued; the next command may find room. One alert a
		// minute per user at most (alertFirst).
		return refuse(audit.DiskFull, "Sorry, the server's disk is full, so I couldn't queue that. The admins have been told; please try again later.", true, "job", j.ID)
	}
	if err != nil {
		s.log.Error("couldn't enqueue job", "job", j.ID, "err", err)
		return refuse("internal", "Sorry, I couldn't queue that (internal error). Please try again.", false)
	}
	audit.Event(s.log, audit.Accepted, append([]any{"job", j.ID, "video", video, "format", format}, who...)...)
	return s.queued(j)
}

// queued is the reply to an accepted command. With a bot token the
// courier posts the job's status in the requester's DM. Without one,
// results go to the command's response_url, which Slack accepts for 30
// minutes only, and a download may take longer (worker.job_timeout_seconds
// is 30 minutes by default): the reply says so.
func (s *Service) queued(j *job.Job) string {
	if s.opt.StatusInDM {
		return fmt.Sprintf("Queued `%s` (%s) as job `%s`. I'll keep you posted in our direct messages until it's saved. "+
			"To stop it: `%s cancel %s`.", j.Video, j.Format, j.ID, s.opt.Command, j.ID)
	}
	return fmt.Sprintf("Queued `%s` (%s) as job `%s`. I'll tell you here when it's saved, "+
		"if that is within 30 minutes: Slack lets me answer here no longer. A later download is still kept on the server.", j.Video, j.Format, j.ID)
}

// enqueue seals what the reply needs into the job and makes the job
// durable: the only write on the request path.
func (s *Service) enqueue(j *job.Job, responseURL string, send bool) error {
	token, err := s.sealer.Seal(j.ID, reply.Info{URL: responseURL, Created: j.Created, Video: j.Video, Format: j.Format, User: j.User, Send: send})
	if err != nil {
		return err
	}
	j.Reply = token
	data, err := j.Marshal()
	if err != nil {
		return err
	}
	return s.jobs.Put(j.FileName(), data)
}

// allowRate records an accepted job of user unless the user has queued
// PerUserPerMinute in the last minute. Its cost does not depend on the
// number of users (userWindow).
func (s *Service) allowRate(user string) bool {
	now := s.opt.Now()
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	if ok, _ := s.rate.allow(user, now, s.opt.PerUserPerMinute); !ok {
		return false
	}
	if err := s.rateLog.add(now, user); err != nil {
		s.log.Error("couldn't record an accepted job in the rate log: the per-user limit holds until the next restart only", "err", err)
	}
	return true
}

func formatList() string {
	names := make([]string, len(job.Formats))
	for i, f := range job.Formats {
		names[i] = string(f)
	}
	return strings.Join(names, ", ")
}

func (s *Service) usage() string {
	send := ""
	if s.opt.Uploads {
		send = " [send]"
	}
	return fmt.Sprintf("`%s <YouTube link> [%s]%s`", s.opt.Command, strings.Join(strings.Split(formatList(), ", "), "|"), send)
}

func (s *Service) help() string {
	where := "I answer here, in this channel, for 30 minutes after the command (Slack allows no longer); a longer download is still kept."
	if s.opt.StatusInDM {
		where = "I keep you posted in our direct messages: one message per video, updated until it's saved, however long that takes."
	}
	return "ytkeep keeps a YouTube video on the team's server for offline viewing.\n" +
		"Usage: " + s.usage() + "\n" +
		"Formats: best (default), audio (sound only), 1080p, 720p, 480p, 360p (highest quality up to that height).\n" +
		"Links: youtube.com/watch?v=…, youtu.be/…, /shorts/…, /live/…, /embed/…\n" + where + "\n" +
		s.moreHelp()
}

func (s *Service) moreHelp() string {
	c := s.opt.Command
	h := fmt.Sprintf("`%s list`: your last 10 jobs and their state.\n"+
		"`%s cancel <job id | link>`: stop your job while it waits or downloads.", c, c)
	if s.opt.Uploads {
		h += fmt.Sprintf("\n`%s <link> send`, or `%s send <job id>` once it is saved: the file in our direct messages too (within the server's size limit and your daily quota).", c, c)
	}
	return h
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

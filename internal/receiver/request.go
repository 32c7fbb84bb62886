package receiver

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/reply"
	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/videourl"
)

// refuser is handle's refusal: audit and the reply text.
type refuser func(reason, msg string, alert bool, extra ...any) string

// requestCommand handles "list", "cancel <job id | link>" and "send <job
// id>": a request for the worker (cancel) and the courier (all three).
// c is authorized already.
func (s *Service) requestCommand(c *slackreq.Command, key string, fields []string, refuse refuser) string {
	r := &job.Request{Kind: job.RequestKind(strings.ToLower(fields[0]))}
	switch {
	case r.Kind == job.RequestList && len(fields) == 1:
	case r.Kind == job.RequestCancel && len(fields) == 2:
		if id := strings.ToLower(fields[1]); job.ValidID(id) {
			r.Job = id
			break
		}
		video, err := videourl.Parse(fields[1])
		if err != nil {
			var pe *videourl.ParseError
			hostile := errors.As(err, &pe) && pe.Hostile()
			return refuse("bad_cancel", fmt.Sprintf("Which job? `%s cancel <job id | link>`: the job ID is in my first answer and in `%s list`.", s.opt.Command, s.opt.Command), hostile)
		}
		r.Video = video
	case r.Kind == job.RequestSend && len(fields) == 2 && job.ValidID(strings.ToLower(fields[1])):
		if !s.opt.Uploads {
			return refuse("uploads_off", "Sending files into Slack is turned off on this server.", false)
		}
		r.Job = strings.ToLower(fields[1])
	default:
		return refuse("usage", "Usage: "+s.usage()+"\n"+s.moreHelp(), false)
	}
	return s.request(r, c.TeamID, c.UserID, c.ChannelID, c.ResponseURL, key, refuse)
}

// handleAction handles a click on a status message's button (a
// block_actions interaction), checked like a command: the app, the
// organization, the workspace, the user; it must come from a direct
// message (where the courier posts status messages), and name a known
// button and a job ID.
func (s *Service) handleAction(a *slackreq.Action, key string) string {
	text, _ := s.handleActionOK(a, key)
	return text
}

// handleActionOK is handleAction; ok is false when the click was valid
// but could not be made durable (worth Slack's retry or a warning).
func (s *Service) handleActionOK(a *slackreq.Action, key string) (text string, ok bool) {
	who := []any{"team", a.TeamID, "user", a.UserID, "channel", a.ChannelID}
	internal := false
	refuse := func(reason, msg string, alert bool, extra ...any) string {
		internal = internal || reason == "internal"
		attrs := append(append([]any{"reason", reason, "interaction", true}, who...), extra...)
		if alert && s.signed.alertFirst(reason, a.TeamID, a.UserID) {
			audit.Alert(s.log, audit.Refused, attrs...)
		} else {
			audit.Event(s.log, audit.Refused, attrs...)
		}
		return msg
	}
	switch {
	case s.opt.AppID != "" && a.APIAppID != s.opt.AppID:
		return refuse("other_app", "", true, "app", trunc(a.APIAppID, 40)), true
	case len(s.opt.AllowedEnterprises) > 0 && !s.enterprises.allows(a.EnterpriseID):
		return refuse("unauthorized_enterprise", "", true, "enterprise", a.EnterpriseID), true
	case !s.teams.allows(a.TeamID):
		return refuse("unauthorized_team", "", true), true
	case !s.users.allows(a.UserID):
		return refuse("unauthorized_user", "", true), true
	case !strings.HasPrefix(a.ChannelID, "D"):
		// The buttons are on messages in the bot's DMs only.
		return refuse("not_a_dm", "", true), true
	case !s.opt.ResponseURLAllowed(a.ResponseURL):
		return refuse("response_url", "", true), true
	case !job.ValidID(a.Value):
		return refuse("bad_action_value", "", true), true
	}
	r := &job.Request{Job: a.Value}
	switch a.ActionID {
	case job.ActionCancel:
		r.Kind = job.RequestCancel
	case job.ActionSend:
		if !s.opt.Uploads {
			return refuse("uploads_off", "", false), true
		}
		r.Kind = job.RequestSend
	default:
		return refuse("unknown_action", "", true, "action", trunc(a.ActionID, 40)), true
	}
	text = s.request(r, a.TeamID, a.UserID, a.ChannelID, a.ResponseURL, key, refuse)
	return text, !internal
}

// request seals a reply token for r and makes it durable in incoming/:
// the worker acts on a cancel, the courier answers at responseURL.
func (s *Service) request(r *job.Request, team, user, channel, responseURL, key string, refuse refuser) string {
	if ok, first := s.allowRequest(user); !ok {
		// One alert per user and minute; the rest are events.
		return refuse("rate_limited", "That's a lot of requests in a minute; please wait a little.", first, "kind", r.Kind)
	}
	r.V, r.ID, r.Team, r.User, r.Channel, r.Created = job.Version, job.NewID(), team, user, channel, s.opt.Now().Unix()
	if key != "" {
		r.ID = job.IDFor(key)
	}
	r.Admin = r.Kind == job.RequestCancel && s.admins.allows(user)
	token, err := s.sealer.Seal(r.ID, reply.Info{URL: responseURL, Created: r.Created, User: user, Request: true,
		Kind: string(r.Kind), Job: r.Job, Video: r.Video})
	if err == nil {
		r.Reply = token
		var data []byte
		if data, err = r.Marshal(); err == nil {
			err = s.jobs.Put(r.FileName(), data)
		}
	}
	attrs := []any{"request", r.ID, "kind", r.Kind, "job", r.Job, "video", r.Video, "admin", r.Admin, "team", team, "user", user, "channel", channel}
	switch {
	case key != "" && errors.Is(err, fs.ErrExist):
		audit.Event(s.log, audit.Duplicate, attrs...)
	case err != nil:
		s.log.Error("couldn't queue a request", "request", r.ID, "err", err)
		return refuse("internal", "Sorry, I couldn't do that (internal error). Please try again.", false)
	default:
		audit.Event(s.log, audit.Requested, attrs...)
	}
	switch {
	case r.Kind == job.RequestList:
		return "Looking up your last jobs…"
	case r.Kind == job.RequestSend:
		return fmt.Sprintf("I'll send the file of job `%s` to our direct messages, if it's saved.", r.Job)
	case r.Job != "":
		return fmt.Sprintf("Cancelling job `%s`…", r.Job)
	}
	return fmt.Sprintf("Cancelling your jobs of `%s`…", r.Video)
}

// allowRequest caps requests per user and minute (twice the jobs' cap),
// in memory: each writes a file, and a cancel must not wait for the
// jobs' limit. first reports the first refusal of the minute.
func (s *Service) allowRequest(user string) (ok, first bool) {
	now := s.opt.Now()
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	return s.requests.allow(user, now, 2*s.opt.PerUserPerMinute)
}

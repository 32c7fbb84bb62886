package job

import (
	"encoding/json"

	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/videourl"
)

// RequestKind is what a request asks for.
type RequestKind string

// The request kinds.
const (
	// RequestCancel stops a job (Job) or the requester's jobs of a video
	// (Video): the worker acts on it and forwards it, with its Outcome,
	// for the courier to answer.
	RequestCancel RequestKind = "cancel"
	// RequestList asks for the requester's last jobs; the worker
	// forwards it to the courier, which keeps that history.
	RequestList RequestKind = "list"
	// RequestSend asks for a finished job's file in the requester's DM;
	// the worker forwards it to the courier.
	RequestSend RequestKind = "send"
)

// Outcome is what the worker did with a cancel request.
type Outcome string

// The outcomes of a cancel.
const (
	OutcomeNone      Outcome = ""          // not a forwarded cancel
	OutcomeCancelled Outcome = "cancelled" // stopped (queued, waiting or downloading)
	OutcomeNotFound  Outcome = "not_found" // no such job is waiting or running
	OutcomeNotYours  Outcome = "not_yours" // another user's job, and the requester is no admin
)

var outcomes = map[Outcome]bool{OutcomeCancelled: true, OutcomeNotFound: true, OutcomeNotYours: true}

// Request is a user's command about jobs rather than a video: written by
// the receiver into incoming/, read by the worker, which forwards it
// (re-encoded, a cancel with its Outcome) into results/ for the courier.
// Like a job it carries a reply token sealed for its own ID; the courier
// answers the user the token names, not the record's User.
type Request struct {
	V       int         `json:"v"`
	ID      string      `json:"id"` // the request's own ID, like a job's
	Kind    RequestKind `json:"kind"`
	Job     string      `json:"job,omitempty"`   // cancel, send: the job named
	Video   string      `json:"video,omitempty"` // cancel: the requester's jobs of this video
	Team    string      `json:"team"`
	User    string      `json:"user"`
	Channel string      `json:"channel"`
	// Admin: the receiver found User among its admins (receiver.admins),
	// who may cancel anyone's job.
	Admin   bool    `json:"admin,omitempty"`
	Created int64   `json:"created"` // Unix seconds
	Outcome Outcome `json:"outcome,omitempty"`
	Count   int     `json:"count,omitempty"` // cancel: jobs stopped
	Reply   string  `json:"reply"`
}

// Validate checks every field and their combinations.
func (r *Request) Validate() error {
	switch {
	case r.V != Version:
		return perr("v", "version %d, want %d", r.V, Version)
	case !ValidID(r.ID):
		return perr("id", "not a request ID")
	case r.Job != "" && !ValidID(r.Job):
		return perr("job", "not a job ID")
	case r.Video != "" && !videourl.ValidID(r.Video):
		return perr("video", "not a video ID")
	case !slackreq.ValidSlackID(r.Team):
		return perr("team", "not a Slack ID")
	case !slackreq.ValidSlackID(r.User):
		return perr("user", "not a Slack ID")
	case !slackreq.ValidSlackID(r.Channel):
		return perr("channel", "not a Slack ID")
	case r.Created < 1_500_000_000 || r.Created > 1<<40:
		return perr("created", "implausible time")
	case !ValidToken(r.Reply):
		return perr("reply", "not a reply token")
	case r.Outcome != OutcomeNone && !outcomes[r.Outcome]:
		return perr("outcome", "unknown outcome")
	case r.Count < 0 || r.Count > MaxPosition:
		return perr("count", "out of range")
	case r.Count != 0 && r.Outcome != OutcomeCancelled:
		return perr("count", "only a cancel that stopped jobs counts them")
	}
	switch r.Kind {
	case RequestCancel:
		if (r.Job == "") == (r.Video == "") {
			return perr("job", "a cancel names a job or a video")
		}
	case RequestList:
		if r.Job != "" || r.Video != "" || r.Admin {
			return perr("kind", "a list names nothing")
		}
	case RequestSend:
		if r.Job == "" || r.Video != "" || r.Admin {
			return perr("job", "a send names a job and nothing else")
		}
	default:
		return perr("kind", "unknown request")
	}
	if r.Kind != RequestCancel && r.Outcome != OutcomeNone {
		return perr("outcome", "only a cancel has an outcome")
	}
	return nil
}

// FileName is the spool file name of the request, in incoming/ and in
// results/.
func (r *Request) FileName() string { return RequestName(r.ID) }

// RequestName is the name of request id's file.
func RequestName(id string) string { return Name{Kind: KindRequest, ID: id}.String() }

// Marshal validates r and returns its canonical encoding.
func (r *Request) Marshal() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// ParseRequest decodes and validates a request in canonical form.
func ParseRequest(data []byte) (*Request, error) {
	return parse[Request](data, MaxRecordSize)
}

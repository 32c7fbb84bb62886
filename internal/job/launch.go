package job

import (
	"encoding/json"

	"github.com/ytkeep/ytkeep/internal/egress"
	"github.com/ytkeep/ytkeep/internal/videourl"
)

// MaxLaunchSize caps a launch request on the worker's socket to the
// launcher server.
const MaxLaunchSize = 64 << 10

// Launch is a request from the worker to the downloader domain's launcher
// server: kill a running child, or download a video in a format into a
// job directory. The launcher server must assume the worker compromised:
// a request names no program, path or option, only what ParseLaunch
// re-validates. (Raw carries a program and its command line for the
// sandbox's own tests; a launcher refuses it unless its setup names
// programs it may run that way, which no release build's does.)
type Launch struct {
	ID     uint64          `json:"id"`
	Kill   bool            `json:"kill,omitempty"`
	JobDir string          `json:"job_dir,omitempty"` // a job id: the directory under the job root
	Video  string          `json:"video,omitempty"`
	Format Format          `json:"format,omitempty"`
	Raw    json.RawMessage `json:"raw,omitempty"`
}

// Validate checks that l is exactly one of: a kill, a download, a raw run.
func (l *Launch) Validate() error {
	download := l.JobDir != "" || l.Video != "" || l.Format != ""
	switch {
	case l.ID == 0:
		return perr("id", "must be positive")
	case l.Kill && (download || l.Raw != nil):
		return perr("kill", "a kill names nothing else")
	case l.Kill:
		return nil
	case download && l.Raw != nil:
		return perr("raw", "a download carries no command line")
	case l.Raw != nil:
		if len(l.Raw) == 0 || l.Raw[0] != '{' {
			return perr("raw", "not an object")
		}
		return nil
	case !ValidID(l.JobDir):
		return perr("job_dir", "not a job id")
	case !videourl.ValidID(l.Video):
		return perr("video", "not a video ID")
	case !l.Format.Valid():
		return perr("format", "unknown format")
	}
	return nil
}

// Marshal validates l and returns its canonical encoding.
func (l *Launch) Marshal() ([]byte, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(l)
}

// ParseLaunch decodes a launch request: at most MaxLaunchSize bytes,
// strict JSON in canonical form, every field re-validated.
func ParseLaunch(data []byte) (*Launch, error) {
	return parse[Launch](data, MaxLaunchSize)
}

// LaunchReply is what the launcher server sends the worker: the answer to
// a Launch (how the child ended, or why nothing ran), or, with Egress set,
// a report of its egress proxy. It comes from the downloader domain, and
// the worker believes it no more than that.
type LaunchReply struct {
	Egress    *egress.Event `json:"egress,omitempty"`
	ID        uint64        `json:"id"`
	Exit      int           `json:"exit"`
	Signal    int           `json:"signal"`
	TimedOut  bool          `json:"timed_out"`
	ElapsedMS int64         `json:"elapsed_ms"`
	Error     string        `json:"error,omitempty"`
}

// Validate checks that r is an answer or a report, each within bounds.
func (r *LaunchReply) Validate() error {
	if e := r.Egress; e != nil {
		switch {
		case r.ID != 0 || r.Exit != 0 || r.Signal != 0 || r.TimedOut || r.ElapsedMS != 0 || r.Error != "":
			return perr("egress", "a report answers no request")
		case e.Job != "" && !ValidID(e.Job), e.Video != "" && !videourl.ValidID(e.Video):
			return perr("egress", "bad job or video")
		case len(e.Host) > 253 || len(e.Addr) > 64 || len(e.Refused) > 512 || e.Up < 0 || e.Down < 0:
			return perr("egress", "out of bounds")
		}
		return nil
	}
	switch {
	case r.ID == 0:
		return perr("id", "must be positive")
	case r.Exit < -1 || r.Exit > 255:
		return perr("exit", "out of range")
	case r.Signal < 0 || r.Signal > 64:
		return perr("signal", "out of range")
	case r.ElapsedMS < 0:
		return perr("elapsed_ms", "negative")
	case len(r.Error) > 16<<10:
		return perr("error", "too long")
	}
	return nil
}

// Marshal validates r and returns its canonical encoding.
func (r *LaunchReply) Marshal() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// ParseLaunchReply decodes what the launcher server sent: at most
// MaxLaunchSize bytes, strict JSON in canonical form, within bounds.
func ParseLaunchReply(data []byte) (*LaunchReply, error) {
	return parse[LaunchReply](data, MaxLaunchSize)
}

package job

import (
	"encoding/json"

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
	if len(data) > MaxLaunchSize {
		return nil, perr("", "%d bytes, over the %d-byte limit", len(data), MaxLaunchSize)
	}
	var l Launch
	if err := decodeStrict(data, &l); err != nil {
		return nil, err
	}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if err := canonical(data, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"time"

	"github.com/ytkeep/ytkeep/internal/job"
)

// rawRun is a raw request's payload: only the sandbox's tests send one.
type rawRun struct {
	Spec      Spec  `json:"spec"`
	TimeoutMS int64 `json:"timeout_ms"`
}

func init() {
	rawSpec = func(raw []byte) (*Spec, time.Duration, error) {
		var r rawRun
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return nil, 0, err
		}
		if err := r.Spec.check(); err != nil {
			return nil, 0, err
		}
		return &r.Spec, time.Duration(r.TimeoutMS) * time.Millisecond, nil
	}
}

// Run executes spec (a program in Setup.RawPrograms) in a fresh child with
// dir as its working directory, copies its output to stdout and stderr,
// and waits for it, at most timeout. Ending ctx kills the child. Tests
// only: release builds have no way to run a caller's command line.
func (l *Launcher) Run(ctx context.Context, spec *Spec, dir *os.File, stdout, stderr io.Writer, timeout time.Duration) (*Outcome, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(&rawRun{Spec: *spec, TimeoutMS: timeout.Milliseconds()})
	if err != nil {
		return nil, err
	}
	return l.do(ctx, &job.Launch{Raw: raw}, dir, stdout, stderr)
}

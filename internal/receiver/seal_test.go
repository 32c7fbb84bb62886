package receiver

import (
	"bytes"
	"testing"

	"github.com/ytkeep/ytkeep/internal/job"
)

// FuzzSealerOpen: a reply token comes back from the worker, which may be
// compromised. Whatever it holds, open never panics, and opens only the
// token the receiver sealed, under the job ID it was sealed for.
func FuzzSealerOpen(f *testing.F) {
	s, err := newSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		f.Fatal(err)
	}
	const id = "abcdefghijklmnopqrstuvwxyz"
	info := replyInfo{URL: "https://hooks.slack.com/commands/T1/1/x", Created: 1764140000, Video: "dQw4w9WgXcQ", Format: job.FormatBest}
	good, err := s.seal(id, info)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(id, good)
	f.Add(id, good[:len(good)-1])
	f.Add("zzzzzzzzzzzzzzzzzzzzzzzzzz", good)
	f.Add(id, "")
	f.Add(id, "AAAA")
	f.Fuzz(func(t *testing.T, jobID, token string) {
		r, err := s.open(jobID, token)
		if err != nil {
			return
		}
		if jobID != id || *r != info {
			t.Fatalf("opened a token the receiver did not seal for %q: %q -> %+v", jobID, token, r)
		}
	})
}

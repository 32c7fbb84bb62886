package reply

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// FuzzSealerOpen: a reply token comes back from the worker, which may be
// compromised. Whatever it holds, Open never panics, and opens only the
// token sealed under this key for the job ID it was sealed for.
func FuzzSealerOpen(f *testing.F) {
	s, err := New(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		f.Fatal(err)
	}
	const id = "abcdefghijklmnopqrstuvwxyz"
	info := Info{URL: "https://hooks.slack.com/commands/T1/1/x", Created: 1764140000, Video: "dQw4w9WgXcQ", Format: job.FormatBest}
	good, err := s.Seal(id, info)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(id, good)
	f.Add(id, good[:len(good)-1])
	f.Add("zzzzzzzzzzzzzzzzzzzzzzzzzz", good)
	f.Add(id, "")
	f.Add(id, "AAAA")
	f.Fuzz(func(t *testing.T, jobID, token string) {
		r, err := s.Open(jobID, token)
		if err != nil {
			return
		}
		if jobID != id || *r != info {
			t.Fatalf("opened a token not sealed for %q: %q -> %+v", jobID, token, r)
		}
	})
}

// TestSealer: a token opens for its job only, and not once changed.
func TestSealer(t *testing.T) {
	s, err := Create(openDir(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	id, other := job.NewID(), job.NewID()
	tok, err := s.Seal(id, Info{URL: "https://hooks.slack.com/x", Created: 1, Video: "dQw4w9WgXcQ", Format: job.FormatBest})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(other, tok); err == nil {
		t.Error("a token opened for another job")
	}
	flipped := []byte(tok)
	flipped[10] ^= 1
	if _, err := s.Open(id, string(flipped)); err == nil {
		t.Error("a changed token opened")
	}
	if r, err := s.Open(id, tok); err != nil || r.Video != "dQw4w9WgXcQ" {
		t.Errorf("Open: %+v, %v", r, err)
	}
}

// TestKeyShared: the receiver creates the key once (KeyMode), the
// courier reads the same key; Read refuses a key that is not private
// enough, linked twice, a symlink, another user's or of the wrong size.
func TestKeyShared(t *testing.T) {
	dir := t.TempDir()
	s, err := Create(openDir(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, KeyFile)
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != KeyMode {
		t.Fatalf("created key: %v, %v", st, err)
	}
	again, err := Create(openDir(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Read(path, os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := s.Seal("abcdefghijklmnopqrstuvwxyz", Info{Video: "dQw4w9WgXcQ"})
	for _, o := range []*Sealer{again, c} {
		if r, err := o.Open("abcdefghijklmnopqrstuvwxyz", tok); err != nil || r.Video != "dQw4w9WgXcQ" {
			t.Fatalf("another sealer of the same key: %v", err)
		}
	}
	if _, err := Read(path, os.Getuid()+1); err == nil || !strings.Contains(err.Error(), "not the receiver's") {
		t.Errorf("another user's key: %v", err)
	}
	for name, mut := range map[string]func(p string) error{
		"group-writable": func(p string) error { return os.Chmod(p, 0o660) },
		"world-readable": func(p string) error { return os.Chmod(p, 0o644) },
		"linked twice":   func(p string) error { return os.Link(p, p+".2") },
		"a symlink": func(p string) error {
			os.Rename(p, p+".real")
			return os.Symlink(p+".real", p)
		},
		"short": func(p string) error { return os.WriteFile(p, make([]byte, 31), 0o640) },
	} {
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			if _, err := Create(openDir(t, d)); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(d, KeyFile)
			if err := mut(p); err != nil {
				t.Fatal(err)
			}
			if _, err := Read(p, -1); err == nil {
				t.Error("read")
			}
		})
	}
}

func openDir(t *testing.T, path string) *spool.Dir {
	t.Helper()
	d, err := spool.OpenDir(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestOldKeyTakesTheCouriersGroup: a key an older receiver made (0600)
// is written again by the next receiver with KeyMode (and, in a setgid
// directory, the directory's group), keeping its bytes: tokens sealed
// before still open.
func TestOldKeyTakesTheCouriersGroup(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, KeyFile)
	old := bytes.Repeat([]byte{9}, 32)
	if err := os.WriteFile(p, old, 0o600); err != nil {
		t.Fatal(err)
	}
	s0, _ := New(old)
	tok, _ := s0.Seal("abcdefghijklmnopqrstuvwxyz", Info{Video: "dQw4w9WgXcQ"})
	s, err := Create(openDir(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != KeyMode {
		t.Fatalf("key after a start: %v, %v; want mode %04o", st.Mode(), err, KeyMode)
	}
	if _, err := s.Open("abcdefghijklmnopqrstuvwxyz", tok); err != nil {
		t.Fatal("a token sealed before does not open")
	}
	if _, err := Read(p, os.Getuid()); err != nil {
		t.Fatalf("the courier cannot read it: %v", err)
	}
}

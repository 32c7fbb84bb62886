// Package reply seals what answering a job needs (its response_url, when
// the command came, the video and format) into a token that travels
// inside the job and its results through the worker, which can neither
// read nor forge it. The receiver seals (Create makes the key at its
// first start); the courier, the one domain that posts, opens (Read).
//
// AES-256-GCM under a 32-byte key; the job ID is the associated data, so
// a token cannot be moved to another job. This lets the receiver make one
// durable write per command instead of two (docs/architecture.md).
package reply

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// Info is what a token carries.
type Info struct {
	URL     string     `json:"u"`
	Created int64      `json:"c"`
	Video   string     `json:"v"`
	Format  job.Format `json:"f"`
	// User is the requester's Slack user ID, whose DM with the bot gets
	// the job's status message ("" in tokens sealed before it was added).
	User string `json:"w,omitempty"`
	// Send: the requester asked for the file in their DM too
	// ("/ytkeep <link> send").
	Send bool `json:"s,omitempty"`
	// Request: the token belongs to a job.Request (list, cancel, send),
	// not to a job: a result may not carry it.
	Request bool `json:"r,omitempty"`
	// Kind and Job are, with Video, what the request asked: sealed, so
	// that a worker forwarding it cannot turn a list into a send, or
	// name another job.
	Kind string `json:"k,omitempty"`
	Job  string `json:"j,omitempty"`
}

// KeyFile is the key's name in the receiver's directory.
const KeyFile = "reply.key"

// KeyMode is the key's mode: its owner (the receiver) and its group,
// which the receiver's setgid directory makes the courier's.
const KeyMode = 0o640

// Sealer seals and opens tokens. It is safe for concurrent use.
type Sealer struct{ aead cipher.AEAD }

// Create reads the key in dir (the receiver's directory), creating it on
// first use with KeyMode.
func Create(dir *spool.Dir) (*Sealer, error) {
	key, err := spool.ReadFile(dir, KeyFile, -1, 64)
	if errors.Is(err, unix.ENOENT) {
		key = make([]byte, 32)
		rand.Read(key)
		if err := spool.WriteFile(dir, dir, KeyFile, key, KeyMode, -1, false); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("couldn't create the reply key: %w", err)
		}
		key, err = spool.ReadFile(dir, KeyFile, -1, 64)
	}
	if err != nil {
		return nil, fmt.Errorf("couldn't read the reply key %s/%s: %w", dir.Path(), KeyFile, err)
	}
	// A key of an install from before the courier: 0600, the receiver's
	// group. Written again, it takes the directory's group (setgid: the
	// courier's) and KeyMode, and replaces the old one in one rename: no
	// root needs to touch a file in a directory the receiver owns.
	var st unix.Stat_t
	gid, gerr := dir.Group()
	if unix.Fstatat(dir.FD(), KeyFile, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && gerr == nil &&
		(st.Mode&0o7777 != KeyMode || int(st.Gid) != gid) {
		if err := spool.WriteFile(dir, dir, KeyFile, key, KeyMode, -1, true); err != nil {
			return nil, fmt.Errorf("couldn't give the reply key its mode and group: %w", err)
		}
	}
	return New(key)
}

// Read reads the key at path for the courier: a regular file of 32
// bytes, with one link, owned by uid (the receiver's, or -1 for any),
// that no one but its owner may write and others may not read.
func Read(path string, uid int) (*Sealer, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("couldn't open the reply key %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, fmt.Errorf("reply key %s is not a regular file", path)
	case st.Nlink != 1:
		return nil, fmt.Errorf("reply key %s has %d links", path, st.Nlink)
	case uid >= 0 && int(st.Uid) != uid:
		return nil, fmt.Errorf("reply key %s belongs to uid %d, not the receiver's (%d)", path, st.Uid, uid)
	case st.Mode&0o027 != 0:
		return nil, fmt.Errorf("reply key %s has mode %04o: its group may not write it, others may not read it", path, st.Mode&0o7777)
	case st.Size != 32:
		return nil, fmt.Errorf("reply key %s is not 32 bytes", path)
	}
	key, err := io.ReadAll(io.LimitReader(f, 33))
	if err != nil {
		return nil, err
	}
	return New(key)
}

// New returns a Sealer with a 32-byte key.
func New(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, errors.New("the reply key is not 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

func aad(jobID string) []byte { return []byte("ytkeep reply v1 " + jobID) }

// Seal returns the token of r for job jobID.
func (s *Sealer) Seal(jobID string, r Info) (string, error) {
	plain, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, aad(jobID))), nil
}

// ErrBadToken is Open's error for a token not sealed with this key for
// this job.
var ErrBadToken = errors.New("reply token does not authenticate")

// Open returns what the token of job jobID carries.
func (s *Sealer) Open(jobID, token string) (*Info, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < s.aead.NonceSize()+s.aead.Overhead() {
		return nil, ErrBadToken
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, b[:n], b[n:], aad(jobID))
	if err != nil {
		return nil, ErrBadToken
	}
	var r Info
	if err := json.Unmarshal(plain, &r); err != nil {
		return nil, ErrBadToken
	}
	return &r, nil
}

package receiver

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

// A reply token carries what the receiver needs to answer a job (the
// response_url and when the command came) through the worker and back,
// sealed with AES-256-GCM under a key only the receiver has. The job ID is
// the associated data, so a token cannot be moved to another job. The
// worker can neither read the response_url (a bearer credential for
// posting into the user's channel) nor forge a token. This lets the
// receiver make one durable write per command instead of two.

type replyInfo struct {
	URL     string     `json:"u"`
	Created int64      `json:"c"`
	Video   string     `json:"v"`
	Format  job.Format `json:"f"`
}

type sealer struct{ aead cipher.AEAD }

const keyFile = "reply.key"

// loadSealer reads the receiver's key from dir, creating it on first use.
func loadSealer(dir *spool.Dir) (*sealer, error) {
	key, err := spool.ReadFile(dir, keyFile, -1, 64)
	if errors.Is(err, unix.ENOENT) {
		key = make([]byte, 32)
		rand.Read(key)
		if err := spool.WriteFile(dir, dir, keyFile, key, 0o600, -1, false); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("couldn't create the reply key: %w", err)
		}
		key, err = spool.ReadFile(dir, keyFile, -1, 64)
	}
	if err != nil {
		return nil, fmt.Errorf("couldn't read the reply key %s/%s: %w", dir.Path(), keyFile, err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("reply key %s/%s is not 32 bytes", dir.Path(), keyFile)
	}
	return newSealer(key)
}

// newSealer returns a sealer with a 32-byte key.
func newSealer(key []byte) (*sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

func aad(jobID string) []byte { return []byte("ytkeep reply v1 " + jobID) }

func (s *sealer) seal(jobID string, r replyInfo) (string, error) {
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

var errBadToken = errors.New("reply token does not authenticate")

func (s *sealer) open(jobID, token string) (*replyInfo, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < s.aead.NonceSize()+s.aead.Overhead() {
		return nil, errBadToken
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, b[:n], b[n:], aad(jobID))
	if err != nil {
		return nil, errBadToken
	}
	var r replyInfo
	if err := json.Unmarshal(plain, &r); err != nil {
		return nil, errBadToken
	}
	return &r, nil
}

// keyFileMode is checked at start: the key must be private.
func checkKeyMode(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("reply key %s has mode %v; it must be 0600", path, st.Mode().Perm())
	}
	return nil
}

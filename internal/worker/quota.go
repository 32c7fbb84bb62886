package worker

import (
	"encoding/json"
	"errors"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/spool"
)

// usageFile holds the bytes each user downloaded today, in the worker's
// private directory: the daily quota survives a restart.
const usageFile = "usage.json"

// maxUsers bounds the users usage remembers in a day (a forged flood of
// user IDs cannot grow the file without bound; past it, new users are
// not counted, and an alert-worthy log line says so).
const maxUsers = 10000

// usage is the per-user daily download quota (Options.DailyBytes).
type usage struct {
	mu    sync.Mutex
	dir   *spool.Dir // worker/
	tmp   *spool.Dir // worker/tmp
	limit int64
	now   func() time.Time
	Day   string           `json:"day"` // UTC, 2006-01-02
	Bytes map[string]int64 `json:"bytes"`
}

func openUsage(dir, tmp *spool.Dir, limit int64, now func() time.Time) (*usage, error) {
	u := &usage{dir: dir, tmp: tmp, limit: limit, now: now, Bytes: map[string]int64{}}
	data, err := spool.ReadFile(dir, usageFile, -1, 1<<20)
	switch {
	case errors.Is(err, unix.ENOENT):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(data, u); err != nil {
			return nil, err
		}
		if u.Bytes == nil {
			u.Bytes = map[string]int64{}
		}
	}
	return u, nil
}

// rollLocked starts a new day's count when the day has changed.
func (u *usage) rollLocked() {
	if d := u.now().UTC().Format(time.DateOnly); d != u.Day {
		u.Day, u.Bytes = d, map[string]int64{}
	}
}

// allows reports whether user may start a download today.
func (u *usage) allows(user string) bool {
	if u == nil || u.limit <= 0 {
		return true
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.rollLocked()
	return u.Bytes[user] < u.limit
}

// add counts n bytes downloaded for user, durably.
func (u *usage) add(user string, n int64) error {
	if u == nil || u.limit <= 0 || n <= 0 {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.rollLocked()
	if _, known := u.Bytes[user]; !known && len(u.Bytes) >= maxUsers {
		return errors.New("too many users counted today")
	}
	u.Bytes[user] += n
	data, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return spool.WriteFile(u.tmp, u.dir, usageFile, data, 0o600, -1, true)
}

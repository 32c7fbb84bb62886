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
// not counted, and an error in the log says so).
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
	held  map[string]int64 // reserved by downloads under way
}

func openUsage(dir, tmp *spool.Dir, limit int64, now func() time.Time) (*usage, error) {
	u := &usage{dir: dir, tmp: tmp, limit: limit, now: now, Bytes: map[string]int64{}, held: map[string]int64{}}
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

// reserve reports whether user may start a download today, and if so
// holds n bytes (the largest file allowed) against the quota until
// settle: downloads running side by side cannot together go past it by
// more than one file's allowance.
func (u *usage) reserve(user string, n int64) bool {
	if u == nil || u.limit <= 0 {
		return true
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.rollLocked()
	if u.Bytes[user]+u.held[user] >= u.limit {
		return false
	}
	u.held[user] += n
	return true
}

// settle releases a reservation of n bytes and counts the bytes the
// download stored, durably. A download that stored nothing (failed,
// cancelled) costs nothing.
func (u *usage) settle(user string, n, stored int64) error {
	if u == nil || u.limit <= 0 {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.held[user] -= n; u.held[user] <= 0 {
		delete(u.held, user)
	}
	if stored <= 0 {
		return nil
	}
	u.rollLocked()
	if _, known := u.Bytes[user]; !known && len(u.Bytes) >= maxUsers {
		return errors.New("too many users counted today: this one is not")
	}
	u.Bytes[user] += stored
	data, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return spool.WriteFile(u.tmp, u.dir, usageFile, data, 0o600, -1, true)
}

package receiver

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// rateLog makes the per-user limit on accepted jobs survive a restart:
// each accepted job appends "<unix seconds> <user ID>\n" to
// receiver/rate.log, and a receiver started since reads back the
// entries of the last minute. No fsync: the page cache keeps what a
// killed process wrote; a power loss may forget the last entries, which
// only loosens the limit for a minute. Past rateLogMax bytes the file is
// rewritten with the live entries alone. It is written under the
// caller's lock (Service.rateMu).
type rateLog struct {
	tmp, dir *spool.Dir
	f        *os.File
	// size is the file's; past limit it is rewritten (twice what the
	// last rewrite wrote, at least rateLogMax: amortised, each entry is
	// written a bounded number of times whatever the number of users).
	size, limit int64
	// failed is set after the first error, which is logged: the limit
	// then holds in memory only.
	failed bool
}

const (
	rateLogName = "rate.log"
	rateLogMax  = 256 << 10
	// rateLogRead bounds what is read back: 100,000 users at the
	// default limit of 20 a minute, about 60 MB; more is dropped.
	rateLogRead = 64 << 20
)

// openRateLog opens dir's rate log (tmp is dir's temporary area) and
// returns, per user, the times of the entries within window before now.
// A line that is not an entry (the file is the receiver's own, but a
// crash can cut one short) is skipped. A log that cannot be read is
// replaced, and the error returned with the log (lost is only the
// limit's memory); a log that cannot be written is an error.
func openRateLog(tmp, dir *spool.Dir, now time.Time, window time.Duration) (l *rateLog, live map[string][]time.Time, lost, err error) {
	live = map[string][]time.Time{}
	data, err := spool.ReadFile(dir, rateLogName, -1, rateLogRead)
	switch {
	case errors.Is(err, unix.ENOENT):
	case err != nil:
		lost = fmt.Errorf("couldn't read %s/%s: %w", dir.Path(), rateLogName, err)
	default:
		for _, line := range bytes.Split(data, []byte("\n")) {
			secs, user, ok := bytes.Cut(line, []byte(" "))
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(string(secs), 10, 64)
			if err != nil || !slackreq.ValidSlackID(string(user)) {
				continue
			}
			if t := time.Unix(n, 0); now.Sub(t) < window && t.Sub(now) < window {
				live[string(user)] = append(live[string(user)], t)
			}
		}
	}
	l = &rateLog{tmp: tmp, dir: dir}
	if err := l.rewrite(live); err != nil {
		return nil, nil, nil, err
	}
	return l, live, lost, nil
}

// rewrite replaces the log with the entries of live and opens it for
// appending.
func (l *rateLog) rewrite(live map[string][]time.Time) error {
	var b bytes.Buffer
	users := make([]string, 0, len(live))
	for u := range live {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		for _, t := range live[u] {
			fmt.Fprintf(&b, "%d %s\n", t.Unix(), u)
		}
	}
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	if err := spool.WriteFile(l.tmp, l.dir, rateLogName, b.Bytes(), 0o600, -1, true); err != nil {
		return err
	}
	fd, err := unix.Openat(l.dir.FD(), rateLogName, unix.O_WRONLY|unix.O_APPEND|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("couldn't open %s/%s: %w", l.dir.Path(), rateLogName, err)
	}
	l.f, l.size = os.NewFile(uintptr(fd), rateLogName), int64(b.Len())
	l.limit = max(rateLogMax, 2*l.size)
	return nil
}

// add records an accepted job of user at t; live is the whole limit's
// state (under the caller's lock), written out when the file has grown
// past rateLogMax. It returns the first error only.
func (l *rateLog) add(t time.Time, user string, live map[string][]time.Time) error {
	if l == nil || l.failed {
		return nil
	}
	n, err := fmt.Fprintf(l.f, "%d %s\n", t.Unix(), user)
	l.size += int64(n)
	if err == nil && l.size > l.limit {
		err = l.rewrite(live)
	}
	if err != nil {
		l.failed = true
	}
	return err
}

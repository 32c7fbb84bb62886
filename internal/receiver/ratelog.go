package receiver

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// rateLog makes the per-user limit on accepted jobs survive a restart:
// each accepted job appends "<unix seconds> <user ID>\n" to the file of
// its minute, receiver/rate.0.log or rate.1.log by the minute's parity,
// and a receiver started since reads both back, keeping the entries of
// the last minute. The first append of a minute truncates that minute's
// file, whose entries are two minutes old: every append costs the same,
// however many users there are. No fsync: the page cache keeps what a
// killed process wrote; a power loss may forget the last entries, which
// only loosens the limit for a minute. It is written under the caller's
// lock (Service.rateMu).
type rateLog struct {
	dir    *spool.Dir
	f      *os.File
	minute int64 // the Unix minute f holds, or -1
	// failed is set after the first error, which is reported: the limit
	// then holds in memory only.
	failed bool
}

// rateLogRead bounds what is read back of each file: 100,000 users at
// the default limit of 20 a minute, about 40 MB; more is dropped.
const rateLogRead = 64 << 20

func rateLogName(minute int64) string { return fmt.Sprintf("rate.%d.log", minute&1) }

// openRateLog opens dir's rate log and returns, per user, the times of the
// entries within window before now. A line that is not an entry (the files
// are the receiver's own, but a crash can cut one short) is skipped. It
// never fails: a file that cannot be read or opened is reported in
// problem, and the limit starts afresh or holds in memory only; the
// receiver starts all the same (a full disk must not stop it).
func openRateLog(dir *spool.Dir, now time.Time, window time.Duration) (l *rateLog, live map[string][]time.Time, problem error) {
	live = map[string][]time.Time{}
	l = &rateLog{dir: dir, minute: -1}
	cur := now.Unix() / 60
	var problems []error
	for _, m := range []int64{cur - 1, cur} {
		name := rateLogName(m)
		data, err := spool.ReadFile(dir, name, -1, rateLogRead)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			problems = append(problems, fmt.Errorf("couldn't read %s/%s: %w", dir.Path(), name, err))
			continue
		}
		newest := int64(-1)
		for _, line := range bytes.Split(data, []byte("\n")) {
			secs, user, ok := bytes.Cut(line, []byte(" "))
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(string(secs), 10, 64)
			if err != nil || !slackreq.ValidSlackID(string(user)) {
				continue
			}
			newest = max(newest, n/60)
			if t := time.Unix(n, 0); now.Sub(t) < window && t.Sub(now) < window {
				live[string(user)] = append(live[string(user)], t)
			}
		}
		if m == cur && newest == cur {
			// This minute's file already: append to it, not over it.
			if err := l.open(cur, false); err != nil {
				problems = append(problems, err)
			}
		}
	}
	return l, live, errors.Join(problems...)
}

// open opens the file of minute m for appending, emptied when truncate.
func (l *rateLog) open(m int64, truncate bool) error {
	if l.f != nil {
		l.f.Close()
		l.f, l.minute = nil, -1
	}
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_APPEND | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if truncate {
		flags |= unix.O_TRUNC
	}
	name := rateLogName(m)
	fd, err := unix.Openat(l.dir.FD(), name, flags, 0o600)
	if err != nil {
		return fmt.Errorf("couldn't open %s/%s: %w", l.dir.Path(), name, err)
	}
	l.f, l.minute = os.NewFile(uintptr(fd), name), m
	return nil
}

// add records an accepted job of user at t. It returns the first error
// only; after it, the log is not written again.
func (l *rateLog) add(t time.Time, user string) error {
	if l == nil || l.failed {
		return nil
	}
	var err error
	if m := t.Unix() / 60; m != l.minute {
		err = l.open(m, true)
	}
	if err == nil {
		_, err = fmt.Fprintf(l.f, "%d %s\n", t.Unix(), user)
	}
	if err != nil {
		l.failed = true
	}
	return err
}

package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/common/expfmt"
	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/audit"
)

// Dir is the directory of daemon's metrics file under the configured
// metrics directory root: <root>/<daemon>. Each daemon has a directory
// of its own, its user's alone; root's root holds the four (see
// docs/confinement.md#the-metrics-directory).
func Dir(root, daemon string) string { return filepath.Join(root, daemon) }

// FileName is the name of daemon's metrics file in its Dir.
func FileName(daemon string) string { return "ytkeep_" + daemon + ".prom" }

// Path is daemon's metrics file: <root>/<daemon>/ytkeep_<daemon>.prom.
func Path(root, daemon string) string { return filepath.Join(Dir(root, daemon), FileName(daemon)) }

// File writes a Set to its daemon's metrics file. It holds its
// directory open from OpenFile on, so a daemon confined since (its
// Landlock rules grant only creating, writing and replacing files in
// that directory: confine.Rules.FileDirs) writes by descriptor.
type File struct {
	dir        *os.File // O_PATH
	name, tmp  string
	set        *Set
	mu         chan struct{} // one write at a time
	lastFailed bool
}

// Repaired, when not empty, says that OpenFile set the daemon's metrics
// directory back to 0755 (for the daemon to report: its mode was changed
// behind its back).
var Repaired string

// OpenFile opens set's daemon's directory under root for writing its
// metrics file. It refuses a directory that is not the daemon's user's
// alone (a directory, owned by the effective uid, neither group- nor
// other-writable), under a root that is not root's or the user's alone
// (neither group- nor other-writable): another daemon could then replace
// the file, or move the directory away.
func OpenFile(root string, set *Set) (*File, error) {
	dirPath := Dir(root, set.daemon)
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		return nil, fmt.Errorf("metrics directory %s: %w", root, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || (st.Uid != 0 && int(st.Uid) != os.Geteuid()) || st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("metrics directory %s must be a directory of root's (or this daemon's user's), writable by its owner alone (it is mode %04o, uid %d)", root, st.Mode&0o7777, st.Uid)
	}
	// The daemon's own directory with another mode than 0755 (a download
	// child, running as the downloader's user, may chmod the directory
	// its user owns: Landlock does not mediate modes) is set back, not
	// refused: refusing would keep the daemon down. The root above is
	// root's and writable by no one else (checked above), so the name
	// cannot be swapped between the check and the chmod.
	if err := unix.Lstat(dirPath, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && int(st.Uid) == os.Geteuid() && st.Mode&0o7777 != 0o755 {
		if err := unix.Chmod(dirPath, 0o755); err != nil {
			return nil, fmt.Errorf("metrics directory %s is mode %04o and could not be set back to 0755: %w", dirPath, st.Mode&0o7777, err)
		}
		Repaired = fmt.Sprintf("%s was mode %04o, set back to 0755", dirPath, st.Mode&0o7777)
	}
	fd, err := unix.Open(dirPath, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("metrics directory %s: %w (make it, the daemon's user's, 0755: deploy/tmpfiles.d/ytkeep.conf)", dirPath, err)
	}
	dir := os.NewFile(uintptr(fd), dirPath)
	if err := unix.Fstat(fd, &st); err != nil {
		dir.Close()
		return nil, err
	}
	if int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 {
		dir.Close()
		return nil, fmt.Errorf("metrics directory %s must be this daemon's user's (uid %d) and writable by it alone (it is mode %04o, uid %d)", dirPath, os.Geteuid(), st.Mode&0o7777, st.Uid)
	}
	name := FileName(set.daemon)
	f := &File{dir: dir, name: name, tmp: "." + name + ".tmp", set: set, mu: make(chan struct{}, 1)}
	return f, nil
}

// Close closes the directory.
func (f *File) Close() error { return f.dir.Close() }

// Write writes the metrics file once: the whole text is rendered first,
// then
//
//  1. the temporary file .ytkeep_<daemon>.prom.tmp left by a crash is
//     removed, and created anew with O_CREAT|O_EXCL|O_NOFOLLOW;
//  2. the text is written and the file made 0644 (node_exporter's user
//     reads it; the units' UMask is 0077);
//  3. it is renamed over ytkeep_<daemon>.prom.
//
// A reader sees the old file or the new one, never a part (rename is
// atomic), and the textfile collector skips the temporary file (its name
// does not end in .prom). There is no fsync: the file is not a handoff
// but a snapshot, replaced every few seconds; after a power loss it may
// be empty or old until the next write.
func (f *File) Write() error {
	f.mu <- struct{}{}
	defer func() { <-f.mu }()
	mfs, err := f.set.reg.Gather()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			return err
		}
	}
	dfd := int(f.dir.Fd())
	if err := unix.Unlinkat(dfd, f.tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("couldn't remove %s: %w", f.tmp, err)
	}
	fd, err := unix.Openat(dfd, f.tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("couldn't create %s: %w", f.tmp, err)
	}
	tmp := os.NewFile(uintptr(fd), f.tmp)
	_, err = tmp.Write(buf.Bytes())
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(dfd, f.tmp, dfd, f.name)
	}
	if err != nil {
		unix.Unlinkat(dfd, f.tmp, 0)
		return fmt.Errorf("couldn't write %s: %w", f.name, err)
	}
	return nil
}

// Run writes the file every interval until ctx ends, and once more then.
// A failed write is logged (once until a write succeeds again) and does
// not stop the daemon: metrics are for the operator, not the service.
func (f *File) Run(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		f.write(log)
		select {
		case <-ctx.Done():
			f.write(log)
			return
		case <-t.C:
		}
	}
}

func (f *File) write(log *slog.Logger) {
	err := f.Write()
	switch {
	case err != nil && !f.lastFailed:
		log.Error("couldn't write the metrics file; trying again", "file", f.name, "err", err)
	case err == nil && f.lastFailed:
		log.Info("the metrics file is written again", "file", f.name)
	}
	f.lastFailed = err != nil
}

// Start opens root's file for set (root "" or set nil: metrics are off; it returns
// a stop that does nothing) and writes it every interval from now on.
// stop ends the writes after a last one and waits for it: call it when
// the daemon stops.
func Start(root string, interval time.Duration, set *Set, log *slog.Logger) (stop func(), err error) {
	if root == "" || set == nil {
		return func() {}, nil
	}
	f, err := OpenFile(root, set)
	if err != nil {
		return nil, err
	}
	if Repaired != "" {
		// Only this daemon's user (or a download running as it) can
		// change the mode: tampering, for the admins.
		audit.Alert(log, audit.Violation, "reason", "metrics_dir_mode", "detail", Repaired)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx, interval, log)
	}()
	return func() {
		cancel()
		<-done
		f.Close()
	}, nil
}

// Package daemon is the start-up the daemons share: the command line
// (-config, -exit-alert), a configuration passed on standard input, and
// entering their confinement with every weakening announced. The
// daemons' own wiring stays in their mains.
package daemon

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/config"
	"github.com/ytkeep/ytkeep/internal/confine"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// Main parses the daemon's command line and runs it: run(configPath), or
// exitAlert(configPath) with -exit-alert (systemd's ExecStopPost=; nil:
// the daemon has none). It exits 1 on an error, 2 on a usage error, and
// never returns.
func Main(name string, run, exitAlert func(configPath string) error) {
	configPath := flag.String("config", "/etc/ytkeep/ytkeep.toml", "configuration file")
	alert := flag.Bool("exit-alert", false, "report how the service ended to the admin channel (systemd ExecStopPost=)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected argument %q\n", name, flag.Arg(0))
		flag.Usage()
		os.Exit(2)
	}
	f, prefix := run, name
	if *alert && exitAlert == nil {
		fmt.Fprintf(os.Stderr, "%s: -exit-alert is not supported: this daemon cannot reach the spool (its peer alerts when it ends)\n", name)
		os.Exit(2)
	}
	if *alert {
		f, prefix = exitAlert, name+" -exit-alert"
	}
	if err := f(*configPath); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prefix, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// StdinConfig is the -config value that means: read the configuration
// from standard input (ReadStdinConfig).
const StdinConfig = "-"

// ReadStdinConfig reads the configuration from standard input to its
// end (at most 1 MiB; an empty one is refused) and checks it with check,
// as config.ReadFor does. Then, whether or not it was valid, it replaces
// standard input with /dev/null: no process started later inherits the
// file, and no process of this user finds it open in /proc/PID/fd. It is how
// a daemon whose user may not read its configuration file gets it:
// systemd opens the file as root and passes it (StandardInput=file:).
func ReadStdinConfig(check func(*config.Config) error) (*config.Config, error) {
	cfg, err := config.ReadFor(os.Stdin, "standard input", check)
	if nerr := stdinToNull(); nerr != nil {
		return nil, nerr
	}
	return cfg, err
}

// stdinToNull points descriptor 0 at /dev/null (dup3 replaces the file
// in one step: descriptor 0 is never free for another open to take).
func stdinToNull() error {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("couldn't replace standard input: %w", err)
	}
	defer null.Close()
	if err := unix.Dup3(int(null.Fd()), 0, 0); err != nil {
		return fmt.Errorf("couldn't replace standard input: %w", err)
	}
	return nil
}

// Confine confines the calling daemon to domain d (Landlock rules, then
// its seccomp filter) and announces, as alerts, every way it is weaker
// than intended: running without Landlock (insecureNoLandlock), and
// sharing its Unix user with the other daemon, whose private directory is
// otherDir. It returns the Landlock ABI, asked before seccomp forbids the
// question, for the start-up log.
func Confine(log *slog.Logger, d confine.Domain, rules *confine.Rules, insecureNoLandlock bool, otherDir string) (abi int, err error) {
	abi = confine.LandlockABI()
	warning, err := confine.Enter(d, rules, insecureNoLandlock)
	if err != nil {
		return abi, err
	}
	if warning != "" {
		audit.Alert(log, audit.Weakened, "warning", warning)
	}
	if uid, err := spool.Owner(otherDir); err == nil && uid == os.Getuid() {
		audit.Alert(log, audit.Weakened, "warning", "this daemon runs as the user of another daemon's directory ("+otherDir+"): Unix-user separation is off (Landlock and seccomp are on); run each daemon as its own user in production")
	}
	return abi, nil
}

// SignalContext is a context that ends at SIGINT or SIGTERM; Stopped
// names the signal that ended it, for the daemon's last log line.
func SignalContext() (ctx context.Context, stop func(), stopped func() string) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	var got atomic.Value
	go func() {
		select {
		case s := <-ch:
			got.Store(s.String())
			cancel()
		case <-ctx.Done():
		}
	}()
	stop = func() { signal.Stop(ch); cancel() }
	stopped = func() string {
		if s, ok := got.Load().(string); ok {
			return s
		}
		return "none"
	}
	return ctx, stop, stopped
}

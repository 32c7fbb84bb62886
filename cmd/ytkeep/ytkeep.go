// Command ytkeep is the administrator's tool: demo runs the whole pipeline
// on loopback; loadtest measures the receiver; status shows what the
// spool holds.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/ytkeep/ytkeep/internal/demo"
	"github.com/ytkeep/ytkeep/internal/doctor"
	"github.com/ytkeep/ytkeep/internal/status"
)

const usage = `usage: ytkeep <command> [flags]

commands:
  doctor     check this machine, the configuration and the spool tree
  status     show queued and running jobs, failures, quarantine and alerts (as root)
  demo       run receiver and worker on loopback with a simulated Slack
  loadtest   send signed and forged slash commands to a receiver at a fixed rate,
             with slowloris connections held open
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	switch os.Args[1] {
	case "doctor":
		fs := flag.NewFlagSet("doctor", flag.ExitOnError)
		cfg := fs.String("config", "/etc/ytkeep/ytkeep.toml", "configuration file")
		parse(fs, os.Args[2:])
		if !doctor.Print(os.Stdout, doctor.Run(doctor.Options{ConfigPath: *cfg})) {
			err = fmt.Errorf("some checks failed")
		}
	case "status":
		fs := flag.NewFlagSet("status", flag.ExitOnError)
		cfg := fs.String("config", "/etc/ytkeep/ytkeep.toml", "configuration file")
		asJSON := fs.Bool("json", false, "print one JSON object instead of tables")
		limit := fs.Int("limit", status.DefaultLimit, "entries shown per section")
		parse(fs, os.Args[2:])
		err = status.Command(os.Stdout, *cfg, *asJSON, *limit, os.Geteuid(), time.Now())
	case "demo":
		fs := flag.NewFlagSet("demo", flag.ExitOnError)
		bin := fs.String("bin", defaultBinDir(), "directory holding ytkeep-receiver and ytkeep-worker")
		keep := fs.Bool("keep", false, "keep the demo directory")
		httpMode := fs.Bool("http", false, "the receiver takes signed HTTP requests on a loopback port instead of Socket Mode")
		parse(fs, os.Args[2:])
		err = demo.Run(ctx, os.Stdout, *bin, *keep, *httpMode)
		if err == nil {
			fmt.Println("\ndemo: OK")
		}
	case "loadtest":
		fs := flag.NewFlagSet("loadtest", flag.ExitOnError)
		bin := fs.String("bin", defaultBinDir(), "directory holding ytkeep-receiver")
		rate := fs.Int("rate", 500, "requests per second")
		dur := fs.Duration("duration", 10*time.Second, "how long to send")
		dir := fs.String("dir", "", "directory for the spool (default: a temporary one)")
		forged := fs.Float64("forged", 0.05, "fraction of forged requests (bad signature, stale timestamp, replay, oversized body, wrong team)")
		slowloris := fs.Int("slowloris", 300, "idle and slowloris connections held open")
		parse(fs, os.Args[2:])
		if *rate < 1 || *rate > 20000 || *dur <= 0 || *dur > 10*time.Minute || *forged < 0 || *forged > 1 || *slowloris < 0 || *slowloris > 5000 {
			err = fmt.Errorf("rate must be 1-20000, duration at most 10m, forged 0-1 and slowloris 0-5000")
			break
		}
		err = demo.Load(ctx, os.Stdout, demo.LoadOptions{BinDir: *bin, Rate: *rate, Duration: *dur, Dir: *dir, Forged: *forged, Slowloris: *slowloris})
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ytkeep %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// defaultBinDir is the directory of this executable: make build puts all
// three binaries together.
func defaultBinDir() string {
	exe, err := os.Executable()
	if err != nil {
		return "bin"
	}
	return filepath.Dir(exe)
}

// parse parses a subcommand's flags; none takes arguments.
func parse(fs *flag.FlagSet, args []string) {
	fs.Parse(args)
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "ytkeep %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		os.Exit(2)
	}
}

// Command ytkeep is the administrator's tool: demo runs the whole pipeline
// on loopback; loadtest measures the receiver.
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
)

const usage = `usage: ytkeep <command> [flags]

commands:
  doctor     check this machine, the configuration and the spool tree
  demo       run receiver and worker on loopback with a simulated Slack
  loadtest   send signed slash commands to a receiver at a fixed rate
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
		parse(fs, os.Args[2:])
		if *rate < 1 || *rate > 20000 || *dur <= 0 || *dur > 10*time.Minute {
			err = fmt.Errorf("rate must be 1-20000 and duration at most 10m")
			break
		}
		err = demo.Load(ctx, os.Stdout, demo.LoadOptions{BinDir: *bin, Rate: *rate, Duration: *dur, Dir: *dir})
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

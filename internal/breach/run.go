//go:build breach

package breach

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Result is one attempt's outcome.
type Result struct {
	ID      string   `json:"id"`
	What    string   `json:"what"`
	Layers  []string `json:"layers"`
	Expect  Expect   `json:"expect"`
	Outcome string   `json:"outcome"` // "succeeded", an errno name, "killed by SIGSYS", …
	Escaped bool     `json:"escaped"`
	Domain  string   `json:"domain"`
	Allowed bool     `json:"allowed,omitempty"` // the domain's own right
}

// Judge fills in the verdict of r for domain.
func Judge(r *Result, domain string) {
	r.Domain = domain
	r.Allowed = AllowedIn(r.ID, domain)
	r.Escaped = r.Outcome == "succeeded" && r.Expect != Accepted && !r.Allowed
}

// Lookup returns the attempt with id.
func Lookup(id string) (Attempt, bool) {
	for _, a := range Catalog {
		if a.ID == id {
			return a, true
		}
	}
	return Attempt{}, false
}

// RunOne runs attempt id in this process and prints its outcome.
func RunOne(id string) {
	for _, a := range Catalog {
		if a.ID == id {
			fmt.Println(describe(a.Run(LoadEnv())))
			return
		}
	}
	fmt.Println("unknown attempt")
	os.Exit(2)
}

func describe(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return "succeeded"
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	default:
		return err.Error()
	}
}

// RunAll runs every attempt in its own subprocess of self. It is started
// by the launcher's child (as yt-dlp would be), so its parent is the
// launcher server, which the attempts target.
func RunAll(self string) []Result {
	var rs []Result
	server := strconv.Itoa(os.Getppid())
	for _, a := range Catalog {
		cmd := exec.Command(self, "attempt", a.ID)
		cmd.Env = append(os.Environ(), "YTKEEP_BREACH_SERVER="+server)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
		err := cmd.Run()
		timer.Stop()
		outcome := strings.TrimSpace(out.String())
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				outcome = "killed by " + unix.SignalName(ws.Signal())
			}
		} else if err != nil {
			outcome = "could not run: " + err.Error()
		}
		if outcome == "" {
			outcome = "no output"
		}
		r := Result{ID: a.ID, What: a.What, Layers: a.Layers, Expect: a.Expect, Outcome: outcome}
		Judge(&r, Downloader)
		rs = append(rs, r)
	}
	return rs
}

// RunIfAsked runs the attempt named by YTKEEP_BREACH_ATTEMPT, if any, and
// exits. The daemons' breach builds call it right after they confine
// themselves, where they would next handle untrusted input.
func RunIfAsked() {
	if id := os.Getenv("YTKEEP_BREACH_ATTEMPT"); id != "" {
		RunOne(id)
		os.Exit(0)
	}
}

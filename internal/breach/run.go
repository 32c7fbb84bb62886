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
	Outcome string   `json:"outcome"` // "succeeded" (Succeeded), an errno name, "killed by SIGSYS", …
	Escaped bool     `json:"escaped"`
	Domain  string   `json:"domain"`
	Allowed bool     `json:"allowed,omitempty"` // the domain's own right
	// Observable: the attempt ended in a way the system can see (the
	// process killed by a signal). Alerted: the admin channel got an
	// alert for it. The suite fills both in.
	Observable bool `json:"observable,omitempty"`
	Alerted    bool `json:"alerted,omitempty"`
}

// Judge fills in the verdict of r for domain.
func Judge(r *Result, domain string) {
	r.Domain = domain
	r.Allowed = AllowedIn(r.ID, domain)
	r.Escaped = Succeeded(r.Outcome) && r.Expect != Accepted && !r.Allowed
}

// Succeeded reports whether outcome is a success: "succeeded", or
// "succeeded: " and how far the attempt got (a connection that left the
// sandbox but found nobody, say).
func Succeeded(outcome string) bool {
	return outcome == "succeeded" || strings.HasPrefix(outcome, "succeeded: ")
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
	var r *reached
	switch {
	case err == nil:
		return "succeeded"
	case errors.As(err, &r):
		return r.Error()
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	default:
		return err.Error()
	}
}

// RunAll runs every attempt in its own subprocess of self, except those
// that run as a job of their own (OwnJob). It is started by the
// launcher's child (as yt-dlp would be), so its parent is the launcher
// server, which the attempts target.
func RunAll(self string) []Result {
	var rs []Result
	server := strconv.Itoa(os.Getppid())
	for _, a := range Catalog {
		if OwnJob(a.ID) {
			continue
		}
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

// TriggerKey marks a crafted input that opens the daemons' backdoor.
const TriggerKey = "ytkeep-breach="

// Trigger is the backdoor of the daemons' breach builds: the receiver
// passes it each request's query string, the worker each claimed job
// file, the courier each claimed result file, before anything parses
// them. If s carries TriggerKey and an attempt id, the attempt runs
// right there, inside the confined daemon, its outcome goes to stdout
// and the process exits.
func Trigger(s string) {
	_, id, ok := strings.Cut(s, TriggerKey)
	if !ok {
		return
	}
	if len(id) > 3 {
		id = id[:3]
	}
	RunOne(id)
	os.Exit(0)
}

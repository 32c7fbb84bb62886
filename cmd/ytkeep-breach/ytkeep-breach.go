//go:build breach

// Command ytkeep-breach is the assume-breach suite's attack runner (test
// builds only). "ytkeep-breach all URL" runs every attempt of the catalog,
// each in its own subprocess, and posts the JSON report to URL, the one
// channel a downloader has: its allowed media port.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"

	"github.com/ytkeep/ytkeep/internal/breach"
)

func main() {
	// Installed setuid root by the suite (B32): it only tells its
	// effective uid, and refuses anything else while privileged.
	if len(os.Args) == 2 && os.Args[1] == "whoami" {
		fmt.Printf("euid=%d\n", os.Geteuid())
		return
	}
	if os.Geteuid() != os.Getuid() {
		os.Exit(2)
	}
	if len(os.Args) == 3 && os.Args[1] == "attempt" {
		breach.RunOne(os.Args[2])
		return
	}
	if len(os.Args) != 3 || os.Args[1] != "all" {
		fmt.Fprintln(os.Stderr, "usage: ytkeep-breach all REPORT-URL | attempt ID")
		os.Exit(2)
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	report, _ := json.Marshal(breach.RunAll(self))
	resp, err := http.Post(os.Args[2], "application/json", bytes.NewReader(report))
	if err != nil {
		fmt.Fprintln(os.Stderr, "could not send the report:", err)
		os.Exit(1)
	}
	resp.Body.Close()
	os.Exit(1) // a "download" that failed, as far as the worker knows
}

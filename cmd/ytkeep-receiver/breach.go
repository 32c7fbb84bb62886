//go:build breach

package main

import (
	"os"

	"github.com/ytkeep/ytkeep/internal/breach"
)

// afterConfinement runs one attempt of the assume-breach catalog with the
// daemon's production confinement in place, where it would next handle
// untrusted input, and exits. Test builds only.
func afterConfinement() {
	if id := os.Getenv("YTKEEP_BREACH_ATTEMPT"); id != "" {
		breach.RunOne(id)
		os.Exit(0)
	}
}

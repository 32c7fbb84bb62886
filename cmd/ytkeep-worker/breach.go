//go:build breach

package main

import "github.com/ytkeep/ytkeep/internal/breach"

// afterConfinement runs one assume-breach attempt if asked (test builds
// only; see breach.RunIfAsked).
func afterConfinement() { breach.RunIfAsked() }

//go:build breach

// Package breach is the assume-breach suite's attack code. It exists only
// in builds with the "breach" tag: no release binary contains it (a test
// checks). Each Attempt is one escape an attacker with code execution in a
// domain would try; the runner executes each in its own subprocess (some
// are meant to be killed) and reports what happened.
package breach

//go:build !breach

package main

// afterConfinement is where the assume-breach build runs an attack; in a
// release build it does nothing.
func afterConfinement() {}

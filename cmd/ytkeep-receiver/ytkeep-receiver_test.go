package main

import (
	"testing"

	"github.com/ytkeep/ytkeep/internal/clitest"
)

func TestMain(m *testing.M) { clitest.Main(m, "ytkeep-receiver", main) }

// TestScript runs testdata/script/*.txtar: the receiver's flags, its configuration errors and -exit-alert.
func TestScript(t *testing.T) { clitest.Run(t) }

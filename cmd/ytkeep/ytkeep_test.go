package main

import (
	"testing"

	"github.com/ytkeep/ytkeep/internal/clitest"
)

func TestMain(m *testing.M) { clitest.Main(m, "ytkeep", main) }

// TestScript runs testdata/script/*.txtar: the usage, the subcommands' argument errors, and doctor on broken configurations, trees, programs and secrets (no script runs demo or loadtest for real).
func TestScript(t *testing.T) { clitest.Run(t) }

package main

import (
	"testing"

	"github.com/ytkeep/ytkeep/internal/clitest"
)

func TestMain(m *testing.M) { clitest.Main(m, "ytkeep-courier", main) }

// TestScript runs testdata/script/*.txtar: the courier's manual.
func TestScript(t *testing.T) { clitest.Run(t) }

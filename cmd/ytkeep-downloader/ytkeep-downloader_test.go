package main

import (
	"testing"

	"github.com/ytkeep/ytkeep/internal/clitest"
)

func TestMain(m *testing.M) { clitest.Main(m, "ytkeep-downloader", main) }

// TestScript runs testdata/script/*.txtar: the downloader's flags, its
// configuration errors and its socket.
func TestScript(t *testing.T) { clitest.Run(t) }

//go:build breach

package worker

import "github.com/ytkeep/ytkeep/internal/breach"

func init() { inputHook = breach.Trigger }

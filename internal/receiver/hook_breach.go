//go:build breach

package receiver

import "github.com/ytkeep/ytkeep/internal/breach"

func init() { inputHook = breach.Trigger }

//go:build breach

package courier

import "github.com/ytkeep/ytkeep/internal/breach"

func init() { inputHook = breach.Trigger }

//go:build !breach

package confine

func ablated(string) bool { return false }

// AblationEnv returns the environment that carries the ablation switch to
// the launcher and its children: nothing in release builds.
func AblationEnv() []string { return nil }

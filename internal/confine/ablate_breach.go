//go:build breach

package confine

import "os"

// ablationVar names the one layer the assume-breach suite switches off.
const ablationVar = "YTKEEP_BREACH_ABLATE"

func ablated(layer string) bool { return os.Getenv(ablationVar) == layer }

// AblationEnv returns the environment that carries the ablation switch to
// the launcher and its children, which otherwise start with an empty one.
func AblationEnv() []string {
	if v, ok := os.LookupEnv(ablationVar); ok {
		return []string{ablationVar + "=" + v}
	}
	return nil
}

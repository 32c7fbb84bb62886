package confine

// Layers the assume-breach suite can switch off one at a time (layer
// ablation), to find the attempts that only one layer stops.
const (
	LayerDAC      = "dac"      // the switch to a dedicated user
	LayerLandlock = "landlock" // every Landlock ruleset
	LayerSeccomp  = "seccomp"  // every seccomp filter
	LayerRlimit   = "rlimit"   // RLIMIT_NPROC of the daemons, every rlimit of the child
)

// Ablated reports whether layer is switched off. It is always false in
// release builds (ablate_release.go); only the breach build reads the
// switch (ablate_breach.go).
func Ablated(layer string) bool { return ablated(layer) }

package daemon

import (
	"flag"
	"fmt"
	"os"
)

// HelpOrUsage prints manual and exits when the one argument asks for
// help (-h, -help, --help); otherwise it makes a usage error print
// synopsis ("usage: ytkeep-x [flags]") and the flags, then where the
// manual is. Each daemon calls it before flag.Parse.
func HelpOrUsage(name, synopsis, manual string) {
	if len(os.Args) == 2 && (os.Args[1] == "-h" || os.Args[1] == "-help" || os.Args[1] == "--help") {
		fmt.Print(manual)
		os.Exit(0)
	}
	usage := func() {
		out := flag.CommandLine.Output()
		fmt.Fprintln(out, synopsis)
		flag.PrintDefaults()
		fmt.Fprintln(out, name+" -help prints its manual.")
	}
	flag.CommandLine.Usage = usage
	flag.Usage = usage
}

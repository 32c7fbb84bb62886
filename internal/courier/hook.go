package courier

// inputHook, when set, sees every claimed result file's bytes before they
// are parsed. Only the assume-breach build sets it (hook_breach.go), to
// stand for a bug in result parsing that gives whoever can write a result
// file (the worker) code execution inside the courier. Release builds
// leave it nil.
var inputHook func(data string)

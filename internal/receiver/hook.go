package receiver

// inputHook, when set, sees every request's query string (in Socket Mode,
// every slash command envelope's payload) before anything else does. Only the assume-breach build sets it (hook_breach.go), to
// stand for a bug in request handling that gives whoever can reach the
// port code execution inside the receiver. Release builds leave it nil.
var inputHook func(query string)

package job

// The action_ids of the buttons on a job's status message in the
// requester's DM (the courier draws them, the receiver turns a click into
// a Request for the job whose ID is the button's value). One definition,
// shared by both sides: a button whose action_id the receiver does not
// know does nothing.
const (
	// ActionCancel is the "Cancel" button, while the job is queued or
	// downloading: a RequestCancel for the job.
	ActionCancel = "ytkeep_cancel"
	// ActionSend is the "Send me the file" button, once the job is saved
	// and its file may be uploaded: a RequestSend for the job.
	ActionSend = "ytkeep_send"
)

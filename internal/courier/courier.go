// Package courier turns the worker's records into Slack messages: it
// reads results/ (results, requests and the worker's alerts), opens each
// record's reply token and posts to the job's status message in the
// requester's DM or to the command's response_url, keeps each user's
// last jobs (list, send) and uploads stored files on request. It is its own
// privilege domain (docs/courier.md): it holds the reply key and the
// alert webhook, reads what only the worker may write, and takes no
// input from Slack.
package courier

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/notify"
	"github.com/ytkeep/ytkeep/internal/reply"
	"github.com/ytkeep/ytkeep/internal/slackapi"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// Options configure a Service.
type Options struct {
	SpoolDir string
	// ResponseURLAllowed vets a job's response_url before a post (see
	// config.Config.ResponseURLAllowed): a token the receiver sealed
	// holds one it vetted, and this checks again.
	ResponseURLAllowed func(string) bool
	Now                func() time.Time
	Logger             *slog.Logger
	// Slack posts with the bot token: each job's status message in the
	// requester's DM (status.go). Nil: results go to the response_url
	// only.
	Slack *slackapi.Client
	// FinalTTL is how long a final status message is retried after the
	// command (default 24 h); RetryBase the first wait between tries
	// (default 10 s).
	FinalTTL, RetryBase time.Duration
	// UpdateWait is how long an intermediate status update may take
	// before it is dropped (default 3 s, interWait in status.go).
	UpdateWait time.Duration
	// Command is the slash command, as the answers spell it (default
	// "/ytkeep").
	Command string
	// DownloadsDir holds the stored files (worker.downloads_dir), which
	// the courier uploads into their requesters' DMs (upload.go), with
	// Slack, when MaxUploadBytes is above 0: the largest file it
	// uploads. UploadQuotaBytes is what it uploads per user and UTC day.
	DownloadsDir                     string
	MaxUploadBytes, UploadQuotaBytes int64
}

// Service replies to results. Its methods are safe for concurrent use.
type Service struct {
	opt      Options
	log      *slog.Logger
	tmp      *spool.Dir   // courier/tmp
	replies  *spool.Dir   // courier/replies: post counts, private
	inbox    *spool.Inbox // results -> courier/claimed
	sealer   *reply.Sealer
	notifier *notify.Notifier

	status *spool.Dir // courier/status: the jobs' status messages
	// unsaved holds, by job ID, a placeholder posted whose record could
	// not be written (a full disk): a retry updates it rather than
	// posting another (*statusRecord).
	unsaved  sync.Map
	retries  *retryQueue
	jobLocks [64]sync.Mutex // one post at a time per job (jobLock)
	updates  chan update    // intermediate updates (runIntermediates)

	history   *spool.Dir // courier/history: each user's last jobs
	quota     *spool.Dir // courier/quota: each user's uploads of the day
	downloads *spool.Dir // the stored files, read only; nil: no uploads
	userLocks userLocks  // one change at a time to a user's history and quota
	uploads   chan uploadTask
	sends     sends        // the uploads queued, running or just made (no repeats)
	badFiles  alertedFiles // the bad stored files already alerted about

	// The lane of requests and DM notices (runMessages): neither ever
	// waits for a post on the goroutine that reads results/.
	requests chan requestTask
	notices  chan notice

	// Test hooks: uploadDeadline bounds one upload task of a file of
	// size bytes (uploadDeadline below); quotaSweepHook, when set, runs
	// before sweepQuota takes a user's lock.
	uploadDeadline func(size int64) time.Duration
	quotaSweepHook func(user string)
}

// New opens the spool directories the courier uses and reads the reply
// key the receiver made (a receiver that has not started yet has made
// none: New fails, and systemd starts the courier again).
func New(opt Options, n *notify.Notifier) (*Service, error) {
	if opt.Logger == nil || opt.ResponseURLAllowed == nil || n == nil {
		return nil, errors.New("courier: incomplete options")
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.FinalTTL == 0 {
		opt.FinalTTL = 24 * time.Hour
	}
	if opt.UpdateWait == 0 {
		opt.UpdateWait = interWait
	}
	if opt.RetryBase == 0 {
		opt.RetryBase = 10 * time.Second
	}
	if opt.Command == "" {
		opt.Command = "/ytkeep"
	}
	s := &Service{opt: opt, log: opt.Logger, notifier: n, retries: &retryQueue{base: opt.RetryBase, due: map[string]retryState{}},
		updates: make(chan update, interQueue), uploads: make(chan uploadTask, uploadQueue),
		requests: make(chan requestTask, requestQueue), notices: make(chan notice, noticeQueue),
		uploadDeadline: uploadDeadline}
	layout := spool.Layout{Root: opt.SpoolDir}
	workerUID, err := spool.Owner(layout.Worker(""))
	if err != nil {
		return nil, err
	}
	receiverUID, err := spool.Owner(layout.Receiver(""))
	if err != nil {
		return nil, err
	}
	paths := []string{layout.Courier("tmp"), layout.Courier("replies"), layout.Results(), layout.Courier("claimed"), layout.Courier("quarantine"),
		layout.Courier("status"), layout.Courier("history"), layout.Courier("quota")}
	// Uploads read the stored files: the downloads directory, which the
	// courier may read as a member of the media group, opened once.
	if opt.Slack != nil && opt.MaxUploadBytes > 0 {
		if opt.DownloadsDir == "" {
			return nil, errors.New("courier: uploads need the downloads directory")
		}
		paths = append(paths, opt.DownloadsDir)
	}
	d := make([]*spool.Dir, len(paths))
	for i, p := range paths {
		if d[i], err = spool.OpenDir(p); err != nil {
			return nil, err
		}
	}
	s.tmp, s.replies, s.status, s.history, s.quota = d[0], d[1], d[5], d[6], d[7]
	if len(d) > 8 {
		s.downloads = d[8]
	}
	// Only the worker's records: a file the receiver (or anyone else)
	// put in results/ is refused, whatever it holds.
	s.inbox = &spool.Inbox{In: d[2], Claimed: d[3], Quarantined: d[4], UID: workerUID, MaxSize: job.MaxRecordSize}
	if s.sealer, err = reply.Read(layout.Receiver(reply.KeyFile), receiverUID); err != nil {
		return nil, err
	}
	return s, nil
}

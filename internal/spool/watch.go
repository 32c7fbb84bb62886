package spool

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/fsnotify/fsnotify"
)

// Watch calls fn with the name of every file in d and then of each file
// created in d, until ctx ends or fn returns false. It starts watching
// before it lists, so no file falls between the two, and lists again when
// inotify reports lost events. fn may see a name twice and must tolerate
// it (Inbox.Claim returns ErrGone). Dot-files (temporary names) are skipped.
func Watch(ctx context.Context, d *Dir, fn func(name string) bool) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("couldn't start inotify: %w", err)
	}
	defer w.Close()
	if err := w.Add(d.Path()); err != nil {
		return fmt.Errorf("couldn't watch %s: %w", d.Path(), err)
	}
	scan := func() (bool, error) {
		names, err := d.Names()
		if err != nil {
			return true, err
		}
		for _, n := range names {
			if !fn(n) {
				return false, nil
			}
		}
		return true, nil
	}
	if more, err := scan(); err != nil || !more {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("inotify watcher closed")
			}
			if !ev.Has(fsnotify.Create) {
				continue
			}
			name := ev.Name[strings.LastIndexByte(ev.Name, '/')+1:]
			if name != "" && name[0] != '.' && !fn(name) {
				return nil
			}
		case _, ok := <-w.Errors:
			if !ok {
				return errors.New("inotify watcher closed")
			}
			// Most likely an overflow: events were lost, so look again.
			if more, err := scan(); err != nil || !more {
				return err
			}
		}
	}
}

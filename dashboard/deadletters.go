package dashboard

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"time"

	"github.com/courierq/courier/jobs"
)

// DeadLetter is a message kept on a dead-letter subscription.
type DeadLetter struct {
	Subscription string // the dead-letter subscription it is on
	MessageID    string // its message ID there; with Subscription, its key
	Type         string // ce-type; "" when it had none (it cannot be re-enqueued)
	JobID        string // ce-id; "" when it had none
	Reason       string
	Attempt      int // the attempt that failed; 0 when it never ran
	Published    time.Time
	Data         []byte
	Labels       map[string]string // the job labels it carried
	Attributes   map[string]string // every attribute, shown when inspected
}

// DeadLetters reads and removes dead letters (courierd: its ingest.Worker).
type DeadLetters interface {
	// Peek returns up to limit dead letters (of typ, or all when typ is
	// ""), leaving them in place.
	Peek(ctx context.Context, typ string, limit int) ([]DeadLetter, error)
	// Ack removes the dead letters with these message IDs from subscription
	// sub and returns the IDs it removed.
	Ack(ctx context.Context, sub string, messageIDs []string) ([]string, error)
}

// deadLetterLimit is how many dead letters of each type one page reads.
const deadLetterLimit = 1000

// dlView is a dead letter with its payload rendered.
type dlView struct {
	DeadLetter
	PayloadJSON string // "" when it does not decode
	PayloadHex  string
	Size        int
}

func (d *Dashboard) deadLetters(w http.ResponseWriter, r *http.Request) {
	typ := r.URL.Query().Get("type")
	dls, err := d.cfg.DeadLetters.Peek(r.Context(), typ, deadLetterLimit)
	if err != nil {
		d.unavailable(w, "reading dead letters", err)
		return
	}
	counts := map[string]int{}
	for _, dl := range dls {
		if dl.Type != "" {
			counts[dl.Type]++
		}
	}
	var types []string
	for t := range counts {
		types = append(types, t)
	}
	sort.Strings(types)
	d.render(w, r, "deadletters", map[string]any{"Title": "Dead letters", "Letters": dls, "Type": typ, "Types": types, "Counts": counts,
		"CanReenqueue": d.cfg.Reenqueue != nil, "Flash": r.URL.Query().Get("flash"), "ActionsNote": d.cfg.ActionsNote})
}

// find peeks for the dead letter sub/id; nil when it is gone.
func (d *Dashboard) findDeadLetter(ctx context.Context, sub, id string) (*DeadLetter, error) {
	dls, err := d.cfg.DeadLetters.Peek(ctx, "", deadLetterLimit)
	if err != nil {
		return nil, err
	}
	for _, dl := range dls {
		if dl.Subscription == sub && dl.MessageID == id {
			return &dl, nil
		}
	}
	return nil, nil
}

func (d *Dashboard) deadLetter(w http.ResponseWriter, r *http.Request) {
	sub, id := r.PathValue("sub"), r.PathValue("id")
	dl, err := d.findDeadLetter(r.Context(), sub, id)
	if err != nil {
		d.unavailable(w, "reading dead letters", err)
		return
	}
	if dl == nil {
		d.fail(w, http.StatusNotFound, fmt.Sprintf("dashboard: no dead letter %s on %s (re-enqueued, or being read by someone else: reload)", id, sub))
		return
	}
	v := dlView{DeadLetter: *dl, Size: len(dl.Data)}
	if js, ok := d.decodeJSON(dl.Type, dl.Data); ok {
		v.PayloadJSON = js
	} else {
		v.PayloadHex = hex.Dump(dl.Data[:min(len(dl.Data), 4096)])
	}
	d.render(w, r, "deadletter", map[string]any{"Title": "Dead letter " + id, "DL": v,
		"CanReenqueue": d.cfg.Reenqueue != nil && dl.Type != "", "Flash": r.URL.Query().Get("flash"), "ActionsNote": d.cfg.ActionsNote})
}

// reenqueueLetter enqueues a new job from dl through Config.Reenqueue (the
// same idempotency as re-enqueuing the FAILED job) and then acks dl.
func (d *Dashboard) reenqueueLetter(ctx context.Context, r *http.Request, dl *DeadLetter) (string, error) {
	if dl.Type == "" {
		return "", errors.New("it has no ce-type, so there is nothing to enqueue it as; inspect it with Pub/Sub tools")
	}
	id := dl.JobID
	if id == "" {
		id = "dead-letter-" + dl.MessageID
	}
	newID, err := d.cfg.Reenqueue(ctx, r, &jobs.Job{ID: id, Type: dl.Type, Payload: dl.Data, Labels: dl.Labels})
	if err != nil {
		return "", err
	}
	acked, err := d.cfg.DeadLetters.Ack(ctx, dl.Subscription, []string{dl.MessageID})
	if err != nil {
		return newID, fmt.Errorf("re-enqueued as %s, but removing the dead letter failed (re-enqueue again: it makes no second job): %w", newID, err)
	}
	if len(acked) != 1 {
		return newID, fmt.Errorf("re-enqueued as %s, but the dead letter was not found to remove (someone is reading it; re-enqueue again: it makes no second job)", newID)
	}
	return newID, nil
}

func (d *Dashboard) reenqueueDeadLetter(w http.ResponseWriter, r *http.Request) {
	sub, id := r.PathValue("sub"), r.PathValue("id")
	if !d.actionAllowed(w, r, d.cfg.Reenqueue != nil) {
		return
	}
	dl, err := d.findDeadLetter(r.Context(), sub, id)
	if err != nil {
		d.unavailable(w, "reading dead letters", err)
		return
	}
	if dl == nil {
		d.fail(w, http.StatusNotFound, fmt.Sprintf("dashboard: no dead letter %s on %s (already re-enqueued?)", id, sub))
		return
	}
	newID, err := d.reenqueueLetter(r.Context(), r, dl)
	if err != nil {
		d.cfg.Logger.Warn("dashboard: re-enqueue of a dead letter refused or failed", "message_id", id, "err", err)
		http.Redirect(w, r, "/dead-letters/"+url.PathEscape(sub)+"/"+url.PathEscape(id)+"?flash="+url.QueryEscape("re-enqueue failed: "+err.Error()), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/jobs/"+url.PathEscape(newID)+"?flash="+url.QueryEscape("re-enqueued from dead letter "+id), http.StatusSeeOther)
}

// reenqueueDeadLetters re-enqueues every dead letter of a type.
func (d *Dashboard) reenqueueDeadLetters(w http.ResponseWriter, r *http.Request) {
	typ := r.PathValue("type")
	if !d.actionAllowed(w, r, d.cfg.Reenqueue != nil) {
		return
	}
	dls, err := d.cfg.DeadLetters.Peek(r.Context(), typ, deadLetterLimit)
	if err != nil {
		d.unavailable(w, "reading dead letters", err)
		return
	}
	// Each letter is tried: one that does not decode must not hold up the
	// others.
	n, failed := 0, 0
	var firstErr error
	for _, dl := range dls {
		if dl.Type != typ {
			continue
		}
		if _, err := d.reenqueueLetter(r.Context(), r, &dl); err != nil {
			if failed++; firstErr == nil {
				firstErr = fmt.Errorf("dead letter %s: %w", dl.MessageID, err)
			}
			continue
		}
		n++
	}
	flash := fmt.Sprintf("re-enqueued %d dead letters of %s", n, typ)
	if firstErr != nil {
		d.cfg.Logger.Warn("dashboard: re-enqueue of dead letters refused or failed", "type", typ, "failed", failed, "err", firstErr)
		flash += fmt.Sprintf("; %d failed, the first: %v", failed, firstErr)
	}
	http.Redirect(w, r, "/dead-letters?flash="+url.QueryEscape(flash), http.StatusSeeOther)
}

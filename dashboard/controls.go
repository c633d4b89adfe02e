package dashboard

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/courierq/courier/jobs"
)

// The job controls: the schedules page and the pause buttons of the
// overview.

func (d *Dashboard) schedules(w http.ResponseWriter, r *http.Request) {
	list, err := d.cfg.Schedules.ListSchedules(r.Context())
	if err != nil {
		d.unavailable(w, "reading schedules", err)
		return
	}
	d.render(w, r, "schedules", map[string]any{"Title": "Schedules", "Schedules": list})
}

// scheduleWhen is a schedule's spec in words.
func scheduleWhen(s *jobs.Schedule) string {
	if s.Every > 0 {
		return "every " + s.Every.String()
	}
	tz := s.TimeZone
	if tz == "" {
		tz = "UTC"
	}
	return fmt.Sprintf("%s (%s)", s.Cron, tz)
}

// pauseType pauses or resumes a job type through Config.PauseType.
func (d *Dashboard) pauseType(pause bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		typ := r.PathValue("type")
		if !d.actionAllowed(w, r, d.cfg.PauseType != nil) {
			return
		}
		verb := "resumed"
		if pause {
			verb = "paused"
		}
		flash := typ + " " + verb
		if err := d.cfg.PauseType(r.Context(), r, typ, pause); err != nil {
			d.cfg.Logger.Warn("dashboard: pause or resume refused or failed", "type", typ, "pause", pause, "err", err)
			flash = strings.TrimSuffix(verb, "d") + " failed: " + err.Error()
		}
		http.Redirect(w, r, "/?flash="+url.QueryEscape(flash), http.StatusSeeOther)
	}
}

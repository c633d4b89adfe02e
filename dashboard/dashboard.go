// Package dashboard is courier's web UI on the HTTP port: an overview per job
// type (counts by state, oldest queued job, dead letters), a jobs list with
// filters (type, state, label) and paging that refreshes itself, and a job
// page (payload and result as JSON, error, attempts, progress, timestamps,
// and the timeline of its state changes from jobs.Store.Events) with cancel and re-enqueue (of a FAILED job, i.e. a dead letter) buttons,
// and re-enqueue of all failed jobs of a type from the overview. With
// Config.DeadLetters it also lists the messages kept on the dead-letter
// subscriptions (poison messages and failed jobs' last deliveries: type, job,
// reason, attempt), shows one (payload as JSON when it decodes, else hex),
// and re-enqueues one, or all of a type, through Config.Reenqueue, removing
// each dead letter once its new job is enqueued.
//
// The front end is server-rendered html/template with a few lines of vanilla
// JavaScript (live refresh replaces a page fragment fetched from the same
// URL with ?fragment=1), all embedded with embed.FS: no build step, no
// node_modules, no CDN at run time, nothing to keep in sync between a bundle
// and the server, and every view works without JavaScript (it just does not
// refresh itself). The pages are plain tables, readable on a phone.
//
// Every response carries a Content-Security-Policy that allows only the
// dashboard's own script and styles (no inline script: confirmations are
// data-confirm attributes that live.js handles; no framing), nosniff and
// X-Frame-Options. Config.Hosts limits the host names it answers (courierd
// sets it in dev mode against DNS rebinding). /static/ serves files, never
// listings. Store errors go to the log; pages say only what failed.
//
// It is for courierd. It reads jobs straight from the jobs.Store (read-only
// views are open to whoever reaches the HTTP port, like /metrics, unless
// Config.Authorize closes them: courierd does so with the gRPC server's
// authenticators and http.dashboard.readRoles), and never changes job
// state itself: actions go through Config.Cancel and Config.Reenqueue, which
// courierd implements with CancelJob and EnqueueJob RPCs to its own gRPC
// server carrying the browser's Authorization header, so the gRPC API's
// authentication and policy decide. The only change it makes itself is
// removing a dead letter after its re-enqueue succeeded. The overview's
// counts and its 15-minute throughput chart come from the store's counters
// (Store.Counts, Store.Throughput), so they are the whole fleet's and cheap
// on any store size; rate-limit waiting is this process's. Re-enqueue from a job page makes a new job from the FAILED
// job's payload and labels and leaves its dead letter in place; re-enqueue
// from the dead-letters page makes the same job (same idempotency key) and
// removes the dead letter.
package dashboard

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/courierq/courier/internal/clip"
	"github.com/courierq/courier/jobs"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Resolver finds message types by full name (protoregistry.GlobalTypes, or
// a *protoregistry.Types of the registered handlers).
type Resolver interface {
	FindMessageByName(protoreflect.FullName) (protoreflect.MessageType, error)
}

// Config configures the dashboard. Store is required.
type Config struct {
	// Store is read for every view.
	Store jobs.Store
	// Types lists the job types the overview shows even when they have no
	// jobs (the registered handlers).
	Types []string
	// Resolver turns payloads and results into JSON. nil shows them as
	// base64 bytes.
	Resolver Resolver
	// Cancel cancels a job on behalf of the HTTP request r (whose
	// credentials it must check). nil: the cancel button is not shown and
	// POST .../cancel answers 403.
	Cancel func(ctx context.Context, r *http.Request, id string) error
	// Reenqueue enqueues a new job with the payload and labels of a FAILED
	// job (a dead letter) on behalf of r, and returns the new job's ID. It
	// should be idempotent per failed job. nil: no re-enqueue buttons, and
	// the POSTs answer 403.
	Reenqueue func(ctx context.Context, r *http.Request, failed *jobs.Job) (newID string, err error)
	// Authorize, when set, decides whether request r may use the dashboard
	// (every page and action; not /static/). It returns nil to allow, an
	// error wrapping ErrUnauthenticated to answer 401 (with a Bearer
	// challenge), or another error to answer 403; the message is shown.
	// nil: every request is allowed.
	Authorize func(r *http.Request) error
	// Hosts, when set, are the only host names (the Host header without
	// its port; IPv6 without brackets) the dashboard answers, pages, actions
	// and static files alike; any other gets 421 Misdirected Request. It stops
	// DNS rebinding: a web page whose own name the attacker re-points at
	// 127.0.0.1 can otherwise read an unauthenticated dashboard and press its
	// buttons, since to the browser it is same-origin. courierd sets it in dev
	// mode to the loopback names and the configured address. nil: any host.
	Hosts []string
	// DeadLetters, when set, adds the dead-letters page (/dead-letters):
	// list, inspect, and re-enqueue (through Reenqueue, then acked) one or
	// all of a type. nil: no such page.
	DeadLetters DeadLetters
	// Schedules, when set, adds the schedules page (/schedules, read-only:
	// the store's schedules, their spec, next tick and last job).
	Schedules jobs.Schedules
	// Paused, when set, shows on the overview which job types are paused
	// (read from the store).
	Paused jobs.TypePauser
	// PauseType pauses (pause true) or resumes a job type on behalf of r
	// (whose credentials it must check). nil: no pause buttons, and the
	// POSTs answer 403.
	PauseType func(ctx context.Context, r *http.Request, typ string, pause bool) error
	// RateLimitWaiting, when set, says how many messages of typ wait for a
	// rate-limit token now (metrics.Metrics.WaitingNow); nil hides the
	// column.
	RateLimitWaiting func(typ string) int
	// ActionsNote explains, on job pages, why actions are off or how they
	// are authorized. "" shows nothing.
	ActionsNote string
	// CountLimit caps how many FAILED jobs of a type one "re-enqueue all"
	// re-enqueues. 0 means 10000.
	CountLimit int
	// RefreshInterval is how often live views refresh. 0 means 2s.
	RefreshInterval time.Duration
	// Logger logs failed actions. nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for ages. nil means time.Now.
	Now func() time.Time
}

// ErrUnauthenticated is wrapped by Config.Authorize's error when the request
// carries no credentials, or bad ones.
var ErrUnauthenticated = errors.New("dashboard: credentials needed")

// Dashboard serves the UI. Mount it at / (it owns /, /jobs, /jobs/{id},
// /static/).
type Dashboard struct {
	cfg  Config
	tmpl *template.Template
	mux  *http.ServeMux
}

// New validates cfg and parses the templates.
func New(cfg Config) (*Dashboard, error) {
	if cfg.Store == nil {
		return nil, errors.New("dashboard: Config.Store is nil; pass the job store")
	}
	if cfg.CountLimit < 0 || cfg.RefreshInterval < 0 {
		return nil, fmt.Errorf("dashboard: negative CountLimit (%d) or RefreshInterval (%v); use 0 for the defaults", cfg.CountLimit, cfg.RefreshInterval)
	}
	if cfg.CountLimit == 0 {
		cfg.CountLimit = 10000
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	d := &Dashboard{cfg: cfg}
	t, err := template.New("").Funcs(template.FuncMap{
		"ts":          d.ts,
		"age":         d.age,
		"pct":         func(f float64) string { return fmt.Sprintf("%.0f", f*100) },
		"lower":       func(s jobs.State) string { return strings.ToLower(string(s)) },
		"filter":      filterURL,
		"refresh":     func() int { return int(d.cfg.RefreshInterval.Milliseconds()) },
		"deadLetters": func() bool { return d.cfg.DeadLetters != nil },
		"schedules":   func() bool { return d.cfg.Schedules != nil },
		"when":        scheduleWhen,
	}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard: templates: %w", err)
	}
	d.tmpl = t
	if cfg.Hosts != nil {
		hosts := make([]string, len(cfg.Hosts))
		for i, h := range cfg.Hosts {
			if h == "" || strings.ContainsAny(h, ":[]/") && net.ParseIP(h) == nil {
				return nil, fmt.Errorf("dashboard: Config.Hosts[%d] is %q; list host names or IP addresses without ports, e.g. localhost or 127.0.0.1", i, h)
			}
			hosts[i] = strings.ToLower(h)
		}
		cfg.Hosts = hosts
	}
	static, _ := fs.Sub(staticFS, "static")
	d.mux = http.NewServeMux()
	d.mux.Handle("GET /static/", http.StripPrefix("/static/", staticFiles(static)))
	d.mux.HandleFunc("GET /{$}", d.overview)
	d.mux.HandleFunc("GET /jobs", d.list)
	d.mux.HandleFunc("GET /jobs/{id}", d.job)
	d.mux.HandleFunc("POST /jobs/{id}/cancel", d.cancel)
	d.mux.HandleFunc("POST /jobs/{id}/reenqueue", d.reenqueue)
	d.mux.HandleFunc("POST /types/{type}/reenqueue-failed", d.reenqueueFailed)
	d.mux.HandleFunc("POST /types/{type}/pause", d.pauseType(true))
	d.mux.HandleFunc("POST /types/{type}/resume", d.pauseType(false))
	if cfg.Schedules != nil {
		d.mux.HandleFunc("GET /schedules", d.schedules)
	}
	if cfg.DeadLetters != nil {
		d.mux.HandleFunc("GET /dead-letters", d.deadLetters)
		d.mux.HandleFunc("GET /dead-letters/{sub}/{id}", d.deadLetter)
		d.mux.HandleFunc("POST /dead-letters/{sub}/{id}/reenqueue", d.reenqueueDeadLetter)
		d.mux.HandleFunc("POST /dead-letters/types/{type}/reenqueue", d.reenqueueDeadLetters)
	}
	return d, nil
}

// contentSecurityPolicy allows the dashboard's own script, styles and
// fetches and nothing else: no inline script (confirmations are in
// live.js), no framing (clickjacking), forms posting only to itself.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP serves the dashboard. Every response carries the security
// headers (Content-Security-Policy, X-Content-Type-Options: nosniff,
// X-Frame-Options: DENY, Referrer-Policy); a request for a host not in
// Config.Hosts gets 421; then Config.Authorize decides (not for /static/).
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	if d.cfg.Hosts != nil && !slices.Contains(d.cfg.Hosts, hostname(r.Host)) {
		d.fail(w, http.StatusMisdirectedRequest, fmt.Sprintf("dashboard: this dashboard answers only to %s, and the request names host %q; open it by one of those names (a page reaching it under another name may be a DNS rebinding attack)", strings.Join(d.cfg.Hosts, ", "), clip.String(r.Host)))
		return
	}
	if d.cfg.Authorize != nil && !strings.HasPrefix(r.URL.Path, "/static/") {
		if err := d.cfg.Authorize(r); err != nil {
			if errors.Is(err, ErrUnauthenticated) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="courier"`)
				d.fail(w, http.StatusUnauthorized, err.Error())
			} else {
				d.fail(w, http.StatusForbidden, err.Error())
			}
			return
		}
	}
	d.mux.ServeHTTP(w, r)
}

// hostname is a Host header's host, lower case, without port or brackets.
func hostname(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
}

// staticFiles serves the files of fsys, and 404 for a directory (no
// listings).
func staticFiles(fsys fs.FS) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Path
		if fi, err := fs.Stat(fsys, name); name == "" || strings.HasSuffix(name, "/") || err != nil || fi.IsDir() {
			http.NotFound(w, r)
			return
		}
		http.ServeFileFS(w, r, fsys, name)
	})
}

// Routes adds the dashboard's routes to mux.
func (d *Dashboard) Routes(mux *http.ServeMux) {
	ps := []string{"GET /static/", "GET /{$}", "GET /jobs", "GET /jobs/{id}", "POST /jobs/{id}/cancel", "POST /jobs/{id}/reenqueue", "POST /types/{type}/reenqueue-failed",
		"POST /types/{type}/pause", "POST /types/{type}/resume"}
	if d.cfg.Schedules != nil {
		ps = append(ps, "GET /schedules")
	}
	if d.cfg.DeadLetters != nil {
		ps = append(ps, "GET /dead-letters", "GET /dead-letters/{sub}/{id}", "POST /dead-letters/{sub}/{id}/reenqueue", "POST /dead-letters/types/{type}/reenqueue")
	}
	for _, p := range ps {
		mux.Handle(p, d)
	}
}

func (d *Dashboard) ts(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

func (d *Dashboard) age(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	a := d.cfg.Now().Sub(t)
	switch {
	case a < time.Second:
		return a.Round(time.Millisecond).String()
	case a < time.Minute:
		return a.Round(100 * time.Millisecond).String()
	default:
		return a.Round(time.Second).String()
	}
}

// render executes a page, or only its "fragment" template for live refresh.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, page string, data any) {
	name := page
	if r.URL.Query().Get("fragment") == "1" {
		name = page + "-fragment"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := d.tmpl.ExecuteTemplate(w, name, data); err != nil {
		d.cfg.Logger.Error("dashboard: rendering", "page", name, "err", err)
	}
}

// unavailable answers 503 for a failed read of the store or a
// subscription. The error goes to the log only: it can name hosts, database
// users and databases, and the dashboard may be open to anyone.
func (d *Dashboard) unavailable(w http.ResponseWriter, doing string, err error) {
	d.cfg.Logger.Error("dashboard: "+doing+" failed", "err", err)
	d.fail(w, http.StatusServiceUnavailable, "dashboard: "+doing+" failed; the server log has the error; try again later")
}

func (d *Dashboard) fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

// TypeSummary is one row of the overview.
type TypeSummary struct {
	Type         string
	Counts       map[jobs.State]int
	OldestQueued time.Time
	DeadLettered int
	Waiting      int // waiting for a rate-limit token now
	Paused       bool
	PausedSince  time.Time
	Chart        *Chart
}

// Chart is a per-minute bar chart of job ends, drawn as inline SVG.
type Chart struct {
	Bars          []Bar
	Width, Height int
	Total, Failed int
	Max           int
}

// Bar is one minute: a green bar of successes with a red one of failures on
// top.
type Bar struct {
	X, OKY, OKH, FailY, FailH, W int
	Label                        string
}

const chartMinutes = 15

// chart draws the ends per minute of the last chartMinutes minutes, oldest
// first.
func chart(ok, failed []int) *Chart {
	c := &Chart{Width: chartMinutes * 8, Height: 30}
	for i := range ok {
		c.Max = max(c.Max, ok[i]+failed[i])
		c.Total += ok[i] + failed[i]
		c.Failed += failed[i]
	}
	for i := range ok {
		b := Bar{X: i * 8, W: 6, Label: fmt.Sprintf("%d min ago: %d succeeded, %d failed", len(ok)-1-i, ok[i], failed[i])}
		if c.Max > 0 {
			b.OKH = ok[i] * c.Height / c.Max
			b.FailH = failed[i] * c.Height / c.Max
		}
		b.OKY = c.Height - b.OKH
		b.FailY = b.OKY - b.FailH
		c.Bars = append(c.Bars, b)
	}
	return c
}

func (d *Dashboard) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	counts, err := d.cfg.Store.Counts(ctx)
	if err != nil {
		d.unavailable(w, "reading jobs", err)
		return
	}
	start := d.cfg.Now().UTC().Truncate(time.Minute).Add(-(chartMinutes - 1) * time.Minute)
	points, err := d.cfg.Store.Throughput(ctx, jobs.ThroughputParams{Since: start, Step: time.Minute})
	if err != nil {
		d.unavailable(w, "reading throughput", err)
		return
	}
	rows := map[string]*TypeSummary{}
	row := func(typ string) *TypeSummary {
		if s, ok := rows[typ]; ok {
			return s
		}
		s := &TypeSummary{Type: typ, Counts: map[jobs.State]int{}}
		for _, st := range jobs.States() {
			s.Counts[st] = 0
		}
		rows[typ] = s
		return s
	}
	for _, t := range d.cfg.Types {
		row(t)
	}
	for _, c := range counts {
		s := row(c.Type)
		maps.Copy(s.Counts, c.States)
		s.OldestQueued = c.OldestQueued
	}
	ends := map[string][2][]int{}
	for _, p := range points {
		i := int(p.Time.Sub(start) / time.Minute)
		if i < 0 || i >= chartMinutes {
			continue
		}
		e, ok := ends[p.Type]
		if !ok {
			e = [2][]int{make([]int, chartMinutes), make([]int, chartMinutes)}
			ends[p.Type] = e
		}
		e[0][i] += p.Succeeded
		e[1][i] += p.Failed
	}
	if d.cfg.Paused != nil {
		paused, err := d.cfg.Paused.PausedTypes(ctx)
		if err != nil {
			d.unavailable(w, "reading paused job types", err)
			return
		}
		for _, p := range paused {
			s := row(p.Type)
			s.Paused, s.PausedSince = true, p.Since
		}
	}
	var out []TypeSummary
	for _, s := range rows {
		// Every FAILED job's last message went to the dead-letter topic.
		s.DeadLettered = s.Counts[jobs.Failed]
		e, ok := ends[s.Type]
		if !ok {
			e = [2][]int{make([]int, chartMinutes), make([]int, chartMinutes)}
		}
		s.Chart = chart(e[0], e[1])
		if d.cfg.RateLimitWaiting != nil {
			s.Waiting = d.cfg.RateLimitWaiting(s.Type)
		}
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	d.render(w, r, "overview", map[string]any{"Title": "Overview", "Rows": out, "States": jobs.States(),
		"CanReenqueue": d.cfg.Reenqueue != nil, "ShowWaiting": d.cfg.RateLimitWaiting != nil, "Flash": r.URL.Query().Get("flash"),
		"ShowPaused": d.cfg.Paused != nil, "CanPause": d.cfg.PauseType != nil})
}

func (d *Dashboard) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := jobs.ListParams{Type: q.Get("type"), State: jobs.State(strings.ToUpper(q.Get("state"))), PageToken: q.Get("page"), PageSize: 50}
	if p.State != "" && !p.State.Valid() {
		d.fail(w, http.StatusBadRequest, fmt.Sprintf("dashboard: state %q is unknown; use one of %v", q.Get("state"), jobs.States()))
		return
	}
	if l := q.Get("label"); l != "" {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			d.fail(w, http.StatusBadRequest, fmt.Sprintf("dashboard: label filter %q must be KEY=VALUE", l))
			return
		}
		p.Labels = map[string]string{k: v}
	}
	js, next, err := d.cfg.Store.List(r.Context(), p)
	if errors.Is(err, jobs.ErrInvalidArgument) {
		d.fail(w, http.StatusBadRequest, "dashboard: "+err.Error())
		return
	}
	if err != nil {
		d.unavailable(w, "listing jobs", err)
		return
	}
	var nextURL string
	if next != "" {
		v := url.Values{}
		for k, vs := range q {
			if k != "fragment" {
				v[k] = vs
			}
		}
		v.Set("page", next)
		nextURL = "/jobs?" + v.Encode()
	}
	d.render(w, r, "list", map[string]any{"Title": "Jobs", "Jobs": js, "Next": nextURL, "Q": q, "States": jobs.States(), "Types": d.cfg.Types, "Paged": p.PageToken != ""})
}

// jobView is a job with its payload and result as JSON.
type jobView struct {
	*jobs.Job
	PayloadJSON, ResultJSON string
	Events                  []jobs.Event // the timeline, oldest first
	CanCancel, CanReenqueue bool
	ActionsNote             string
	Flash                   string
}

func (d *Dashboard) job(w http.ResponseWriter, r *http.Request) {
	j, err := d.cfg.Store.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, jobs.ErrNotFound) {
		d.fail(w, http.StatusNotFound, fmt.Sprintf("dashboard: no job %q (finished jobs are deleted after the retention period)", r.PathValue("id")))
		return
	}
	if err != nil {
		d.unavailable(w, "reading job", err)
		return
	}
	v := jobView{Job: j, PayloadJSON: d.toJSON(j.Type, j.Payload), ActionsNote: d.cfg.ActionsNote, Flash: r.URL.Query().Get("flash")}
	if v.Events, err = d.cfg.Store.Events(r.Context(), j.ID); err != nil {
		d.unavailable(w, "reading the job's timeline", err)
		return
	}
	if j.ResultType != "" {
		v.ResultJSON = d.toJSON(j.ResultType, j.Result)
	}
	v.CanCancel = d.cfg.Cancel != nil && !j.State.Terminal()
	v.CanReenqueue = d.cfg.Reenqueue != nil && j.State == jobs.Failed
	d.render(w, r, "job", map[string]any{"Title": "Job " + j.ID, "Job": v})
}

// toJSON renders a binary protobuf message of type name as indented JSON,
// or, when it does not decode, its bytes (base64) with the reason.
func (d *Dashboard) toJSON(name string, data []byte) string {
	js, ok := d.decodeJSON(name, data)
	if ok {
		return js
	}
	b, _ := json.MarshalIndent(map[string]any{"@type": name, "bytes": data, "note": js}, "", "  ")
	return string(b)
}

// decodeJSON renders a binary protobuf message of type name as indented
// JSON; when it cannot, it returns why and false.
func (d *Dashboard) decodeJSON(name string, data []byte) (string, bool) {
	if d.cfg.Resolver == nil {
		return "no type resolver", false
	}
	if name == "" {
		return "no type", false
	}
	mt, err := d.cfg.Resolver.FindMessageByName(protoreflect.FullName(name))
	if err != nil {
		return "type not linked into courierd", false
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(data, m); err != nil {
		return "does not decode: " + err.Error(), false
	}
	b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err.Error(), false
	}
	// protojson varies its white space on purpose; indent it stably.
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return string(b), true
	}
	return out.String(), true
}

func (d *Dashboard) cancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !d.actionAllowed(w, r, d.cfg.Cancel != nil) {
		return
	}
	flash := "cancelled"
	if err := d.cfg.Cancel(r.Context(), r, id); err != nil {
		d.cfg.Logger.Warn("dashboard: cancel refused or failed", "job_id", id, "err", err)
		flash = "cancel failed: " + err.Error()
	}
	http.Redirect(w, r, "/jobs/"+url.PathEscape(id)+"?flash="+url.QueryEscape(flash), http.StatusSeeOther)
}

func (d *Dashboard) reenqueue(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !d.actionAllowed(w, r, d.cfg.Reenqueue != nil) {
		return
	}
	j, err := d.cfg.Store.Get(r.Context(), id)
	if err != nil {
		d.fail(w, http.StatusNotFound, fmt.Sprintf("dashboard: job %q: %v", id, err))
		return
	}
	if j.State != jobs.Failed {
		d.fail(w, http.StatusConflict, fmt.Sprintf("dashboard: job %s is %s; only FAILED jobs (dead letters) are re-enqueued", id, j.State))
		return
	}
	newID, err := d.cfg.Reenqueue(r.Context(), r, j)
	if err != nil {
		d.cfg.Logger.Warn("dashboard: re-enqueue refused or failed", "job_id", id, "err", err)
		http.Redirect(w, r, "/jobs/"+url.PathEscape(id)+"?flash="+url.QueryEscape("re-enqueue failed: "+err.Error()), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/jobs/"+url.PathEscape(newID)+"?flash="+url.QueryEscape("re-enqueued from "+id), http.StatusSeeOther)
}

// reenqueueFailed re-enqueues every FAILED job of a type (up to
// CountLimit).
func (d *Dashboard) reenqueueFailed(w http.ResponseWriter, r *http.Request) {
	typ := r.PathValue("type")
	if !d.actionAllowed(w, r, d.cfg.Reenqueue != nil) {
		return
	}
	var failed []*jobs.Job
	token := ""
	for len(failed) < d.cfg.CountLimit {
		js, next, err := d.cfg.Store.List(r.Context(), jobs.ListParams{Type: typ, State: jobs.Failed, PageSize: 1000, PageToken: token})
		if err != nil {
			d.unavailable(w, "listing failed jobs", err)
			return
		}
		failed = append(failed, js...)
		if next == "" {
			break
		}
		token = next
	}
	n := 0
	var firstErr error
	for _, j := range failed {
		if _, err := d.cfg.Reenqueue(r.Context(), r, j); err != nil {
			firstErr = err
			break // the same refusal would repeat
		}
		n++
	}
	flash := fmt.Sprintf("re-enqueued %d failed %s jobs", n, typ)
	if firstErr != nil {
		d.cfg.Logger.Warn("dashboard: re-enqueue refused or failed", "type", typ, "err", firstErr)
		flash += "; stopped: " + firstErr.Error()
	}
	http.Redirect(w, r, "/?flash="+url.QueryEscape(flash), http.StatusSeeOther)
}

// actionAllowed answers 403 (and returns false) for cross-origin posts and
// when the action is off.
func (d *Dashboard) actionAllowed(w http.ResponseWriter, r *http.Request, on bool) bool {
	if !sameOrigin(r) {
		d.fail(w, http.StatusForbidden, "dashboard: cross-origin request refused; use the dashboard's own buttons")
		return false
	}
	if !on {
		d.fail(w, http.StatusForbidden, "dashboard: actions are off: "+d.cfg.ActionsNote)
		return false
	}
	return true
}

// sameOrigin refuses cross-site form posts (CSRF): a browser sends Origin
// on POST; when it does, its host must be ours.
func sameOrigin(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return o == ""
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// filterURL builds a jobs-list URL with one filter changed.
func filterURL(q url.Values, key, value string) string {
	v := url.Values{}
	for k, vs := range q {
		if k != "fragment" && k != "page" {
			v[k] = vs
		}
	}
	if value == "" {
		v.Del(key)
	} else {
		v.Set(key, value)
	}
	if len(v) == 0 {
		return "/jobs"
	}
	return "/jobs?" + v.Encode()
}

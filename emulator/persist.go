package emulator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The data log is one JSON record per line, each describing one change.
// A change is written (one write call per record, no fsync: a kill -9
// loses nothing the kernel has, a power cut may) before it takes effect in
// memory, so a failed write changes nothing: the RPC that asked for it
// fails, and the partial record is cut off the file. On start the log is
// replayed: a torn last line (no newline) is dropped, but a damaged line
// anywhere else stops the start with an error naming the file, the line
// and its byte offset (see errDamaged); nothing is rewritten then. After a
// clean replay the state is written out as a new, compacted log, and the
// log is compacted again while running whenever it has grown by
// Config.CompactBytes and doubled.

const logName = "pubsub.log"

const (
	opTopicPut  = "topic"
	opTopicDel  = "topic-del"
	opSubPut    = "sub"
	opSubDel    = "sub-del"
	opDetach    = "detach"
	opPublish   = "publish"
	opAck       = "ack"
	opDeliver   = "deliver"   // delivery attempts, in subscriptions with a dead-letter policy
	opAttempts  = "attempts"  // compacted: delivery counts
	opDeadLet   = "dead"      // a message moved to a dead-letter topic
	opActive    = "active"    // a subscription's last activity (expiration_policy)
	opSnapPut   = "snap"      //
	opSnapUpd   = "snap-upd"  //
	opSnapDel   = "snap-del"  //
	opSeek      = "seek"      //
	opTopicLog  = "topic-log" // compacted: a topic's retained messages
	opHighWater = "hwm"       // compacted: the last message sequence number
	opSchemaPut = "schema"    // a schema with all its revisions
	opSchemaDel = "schema-del"
)

type logRecord struct {
	Op   string   `json:"op"`
	Name string   `json:"name,omitempty"`
	PB   []byte   `json:"pb,omitempty"`   // a Topic, Subscription or Snapshot
	Revs [][]byte `json:"revs,omitempty"` // schema: its revisions (Schema), oldest first
	Sub  string   `json:"sub,omitempty"`  // snap: its subscription; seek: the snapshot; dead: the dead-letter topic
	Msgs []logMsg `json:"msgs,omitempty"` // publish, or a compacted snapshot's messages
	Only []string `json:"only,omitempty"` // publish: only to these subscriptions
	Seqs []uint64 `json:"seqs,omitempty"` // ack, deliver, attempts, dead
	N    []int32  `json:"n,omitempty"`    // attempts: the count of each of Seqs
	Seq  uint64   `json:"seq,omitempty"`  // hwm
	Time int64    `json:"time,omitempty"` // unix nanos: snapshot time, seek time, activity
}

type logMsg struct {
	Seq   uint64            `json:"seq"`
	Time  int64             `json:"t"`
	Data  []byte            `json:"d,omitempty"`
	Attrs map[string]string `json:"a,omitempty"`
	Key   string            `json:"k,omitempty"`
}

type opLog struct {
	path   string
	f      *os.File
	w      io.Writer // f; tests put a failing writer in between
	lock   *os.File  // DataDir/LOCK, flocked while the emulator runs
	size   int64     // bytes of whole records in f
	base   int64     // size right after the last compaction
	broken error     // a failed write that could not be cut off: no more writes
	// tail collects the records written while a compaction runs, for the
	// compacted file; nil when none runs.
	tail          *bytes.Buffer
	compactions   int           // finished or failed, for tests
	kick          chan struct{} // record asks the compactor to run
	quit          chan struct{} // closeLog ends the compactor
	compactorDone chan struct{}
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func toLogMsgs(msgs []*message) []logMsg {
	out := make([]logMsg, len(msgs))
	for i, m := range msgs {
		out[i] = logMsg{Seq: m.seq, Time: m.publish.UnixNano(), Data: m.pb.Data, Attrs: m.pb.Attributes, Key: m.pb.OrderingKey}
	}
	return out
}

func publishRecord(topic string, msgs []*message, only []string) *logRecord {
	return &logRecord{Op: opPublish, Name: topic, Msgs: toLogMsgs(msgs), Only: only}
}

// logTime is t in unix nanoseconds, clamped to what int64 holds (years
// 1678 to 2262).
func logTime(t time.Time) int64 {
	if t.Before(minLogTime) {
		return math.MinInt64
	}
	if t.After(maxLogTime) {
		return math.MaxInt64
	}
	return t.UnixNano()
}

var (
	minLogTime = time.Unix(0, math.MinInt64)
	maxLogTime = time.Unix(0, math.MaxInt64)
)

// record appends r to the data log, if there is one. Call it before the
// change r describes takes effect, with the engine locked: when it fails
// (an Internal status error naming the file), make no change.
func (e *engine) record(r *logRecord) error {
	l := e.log
	if l == nil {
		return nil
	}
	if l.broken != nil {
		return status.Errorf(codes.Internal, "emulator: the data log %s could not be written (%v) and could not be repaired; nothing more is changed; restart the emulator", l.path, l.broken)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return status.Errorf(codes.Internal, "emulator: encoding a log record: %v", err)
	}
	b = append(b, '\n')
	n, err := l.w.Write(b)
	if err != nil {
		// Cut off whatever part of the record was written, so that the
		// next record starts on a line of its own; if that fails, the file
		// can take no more.
		if terr := l.f.Truncate(l.size); terr != nil {
			l.broken = fmt.Errorf("%v, then cutting off the partial record: %v", err, terr)
		}
		return status.Errorf(codes.Internal, "emulator: writing the data log %s: %v; nothing was changed", l.path, err)
	}
	l.size += int64(n)
	if l.tail != nil {
		l.tail.Write(b)
	} else if e.cfg.CompactBytes > 0 && l.size-l.base >= e.cfg.CompactBytes && l.size >= 2*l.base {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// mustRecord records a change that cannot be refused (best effort); a
// failure is left to the next write to report.
func (e *engine) mustRecord(r *logRecord) { _ = e.record(r) }

func (e *engine) closeLog() error {
	e.mu.Lock()
	l := e.log
	e.mu.Unlock()
	if l == nil {
		return nil
	}
	close(l.quit)
	<-l.compactorDone // a running compaction finishes first
	e.mu.Lock()
	defer e.mu.Unlock()
	err := l.f.Close()
	l.lock.Close() // releases the flock
	e.log = nil
	return err
}

// errDamaged says where the data log is damaged and what to do. The start
// fails rather than dropping the records after the damage (they may hold
// acks, or messages that exist nowhere else) and nothing is rewritten, so
// the user decides: cut that line, or start empty.
func errDamaged(path string, line int, off int64, cause error) error {
	return fmt.Errorf("emulator: the data log %s is damaged at line %d (byte offset %d): %v; "+
		"the emulator did not start and changed nothing. To keep every other record, delete that line "+
		"(sed -i '%dd' %s) and start again; to start empty, move the file aside (mv %s %s.damaged)",
		path, line, off, cause, line, path, path, path)
}

// openLog replays dir's log, compacts it and opens it for appending.
func (e *engine) openLog(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("emulator: creating data dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("emulator: creating the lock file in %s: %w", dir, err)
	}
	if err := flockWait(lock); err != nil {
		lock.Close()
		return fmt.Errorf("emulator: data dir %s is in use by another emulator (%v); stop it or pick another --data-dir", dir, err)
	}
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()
	path := filepath.Join(dir, logName)
	e.mu.Lock()
	defer e.mu.Unlock()
	if f, err := os.Open(path); err == nil {
		err = e.replay(f, path)
		f.Close()
		if err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("emulator: opening %s: %w", path, err)
	}
	tmp, err := writeLogFile(path, e.compacted())
	if err != nil {
		return err
	}
	size, err := replaceLogFile(tmp, path)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("emulator: opening %s: %w", path, err)
	}
	l := &opLog{path: path, f: f, w: f, lock: lock, size: size, base: size,
		kick: make(chan struct{}, 1), quit: make(chan struct{}), compactorDone: make(chan struct{})}
	e.log = l
	go e.compactor(l)
	ok = true
	return nil
}

// flockWait takes an exclusive flock on f, waiting up to two seconds: a
// lock just released can still be held for a moment by a child process
// forked (but not yet exec'd) while it was held, since the child shares
// the open file.
func flockWait(f *os.File) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil || !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeLogFile writes recs to path.tmp and syncs it; the file is returned
// open, for more records.
func writeLogFile(path string, recs []*logRecord) (*os.File, error) {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("emulator: writing %s: %w", tmp, err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	enc := json.NewEncoder(w)
	for _, r := range recs {
		if err = enc.Encode(r); err != nil {
			break
		}
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("emulator: writing %s: %w", tmp, err)
	}
	return f, nil
}

// replaceLogFile closes tmp (from writeLogFile) and renames it over path;
// it returns the file's size.
func replaceLogFile(tmp *os.File, path string) (int64, error) {
	st, err := tmp.Stat()
	if err == nil {
		err = tmp.Close()
	} else {
		tmp.Close()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return 0, fmt.Errorf("emulator: replacing %s with a compacted copy: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return st.Size(), nil
}

// compactor compacts l each time record kicks it, until closeLog.
func (e *engine) compactor(l *opLog) {
	defer close(l.compactorDone)
	for {
		select {
		case <-l.quit:
			return
		case <-l.kick:
			e.compact(l)
		}
	}
}

// compact rewrites the log as the current state, without stopping the
// emulator for the writing: the state is taken with the lock held (every
// operation is whole then), written out without it while new records go
// both to the old file and to a tail buffer, and then, locked again, the
// tail is appended and the new file replaces the old one. If anything
// fails the old file stays in use, whole.
func (e *engine) compact(l *opLog) {
	e.mu.Lock()
	if e.log != l || l.broken != nil || l.tail != nil {
		e.mu.Unlock()
		return
	}
	recs := e.compacted()
	l.tail = &bytes.Buffer{}
	e.mu.Unlock()

	tmp, err := writeLogFile(l.path, recs)

	e.mu.Lock()
	defer e.mu.Unlock()
	tail := l.tail
	l.tail = nil
	l.compactions++
	if err == nil {
		if _, err = tmp.Write(tail.Bytes()); err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}
	var size int64
	if err == nil {
		size, err = replaceLogFile(tmp, l.path)
	}
	if err != nil {
		l.base = l.size // try again only after as much growth again
		return
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		// The compacted file is in place, but cannot be appended to.
		l.broken = fmt.Errorf("reopening it after compaction: %v", err)
		return
	}
	l.f.Close()
	l.f, l.w = f, f
	l.size, l.base = size, size
}

// replay applies every whole record of r. A torn last record (no newline)
// is ignored; any other record that cannot be read or applied stops the
// replay with errDamaged.
func (e *engine) replay(r io.Reader, path string) error {
	br := bufio.NewReaderSize(r, 1<<20)
	known := make(map[uint64]*message)
	msgOf := func(lm logMsg) *message {
		if m := known[lm.Seq]; m != nil {
			return m
		}
		m := newMessage(lm.Seq, time.Unix(0, lm.Time), lm.Data, lm.Attrs, lm.Key)
		known[lm.Seq] = m
		e.seq = max(e.seq, lm.Seq)
		return m
	}
	var off int64
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if err == io.EOF {
			return nil // a line without its newline is a torn write
		}
		if err != nil {
			return fmt.Errorf("emulator: reading %s: %w", path, err)
		}
		var rec logRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return errDamaged(path, line, off, err)
		}
		if err := e.apply(&rec, msgOf); err != nil {
			return errDamaged(path, line, off, fmt.Errorf("record %q: %w", rec.Op, err))
		}
		off += int64(len(b))
	}
}

func (e *engine) apply(rec *logRecord, msgOf func(logMsg) *message) error {
	switch rec.Op {
	case opTopicPut:
		pb := &pubsubpb.Topic{}
		if err := proto.Unmarshal(rec.PB, pb); err != nil {
			return err
		}
		if t := e.topics[pb.Name]; t != nil {
			t.pb = pb
		} else {
			e.createTopicLocked(pb)
		}
	case opTopicLog:
		if t := e.topics[rec.Name]; t != nil {
			for _, lm := range rec.Msgs {
				t.log = append(t.log, msgOf(lm))
			}
		}
	case opTopicDel:
		if e.topics[rec.Name] != nil {
			e.deleteTopicLocked(rec.Name)
		}
	case opSubPut:
		pb := &pubsubpb.Subscription{}
		if err := proto.Unmarshal(rec.PB, pb); err != nil {
			return err
		}
		f, err := parseFilter(pb.Filter)
		if err != nil {
			return err
		}
		s := e.putSubLocked(pb, f)
		if rec.Time != 0 {
			s.active = time.Unix(0, rec.Time)
			s.activeLogged = s.active
		}
	case opSubDel:
		if s := e.subs[rec.Name]; s != nil {
			e.deleteSubLocked(s)
		}
	case opDetach:
		if s := e.subs[rec.Name]; s != nil {
			e.detachLocked(s)
		}
	case opActive:
		if s := e.subs[rec.Name]; s != nil {
			s.active = time.Unix(0, rec.Time)
			s.activeLogged = s.active
		}
	case opPublish:
		msgs := make([]*message, len(rec.Msgs))
		for i, lm := range rec.Msgs {
			msgs[i] = msgOf(lm)
		}
		if rec.Only != nil {
			for _, name := range rec.Only {
				if s := e.subs[name]; s != nil {
					for _, m := range msgs {
						s.addLocked(m)
					}
				}
			}
		} else if t := e.topics[rec.Name]; t != nil {
			e.fanOutLocked(t, msgs, nil)
		}
	case opAck:
		if s := e.subs[rec.Name]; s != nil {
			for _, seq := range rec.Seqs {
				if sm := s.msgs.get(seq); sm != nil && sm.st != stAcked {
					s.ackLocked(sm)
				}
			}
		}
	case opDeliver:
		if s := e.subs[rec.Name]; s != nil {
			for _, seq := range rec.Seqs {
				if sm := s.msgs.get(seq); sm != nil {
					sm.attempts++
				}
			}
		}
	case opAttempts:
		if len(rec.N) != len(rec.Seqs) {
			return fmt.Errorf("%d counts for %d messages", len(rec.N), len(rec.Seqs))
		}
		if s := e.subs[rec.Name]; s != nil {
			for i, seq := range rec.Seqs {
				if sm := s.msgs.get(seq); sm != nil {
					sm.attempts = rec.N[i]
				}
			}
		}
	case opDeadLet:
		if len(rec.Msgs) != 1 || len(rec.Seqs) != 1 {
			return fmt.Errorf("want one message and one sequence number, got %d and %d", len(rec.Msgs), len(rec.Seqs))
		}
		m := msgOf(rec.Msgs[0])
		if dlt := e.topics[rec.Sub]; dlt != nil {
			e.fanOutLocked(dlt, []*message{m}, nil)
		}
		if s := e.subs[rec.Name]; s != nil {
			if sm := s.msgs.get(rec.Seqs[0]); sm != nil {
				s.dropLocked(sm)
			}
		}
	case opHighWater:
		e.seq = max(e.seq, rec.Seq)
	case opSnapPut:
		pb := &pubsubpb.Snapshot{}
		if err := proto.Unmarshal(rec.PB, pb); err != nil {
			return err
		}
		when := time.Unix(0, rec.Time)
		if rec.Sub == "" {
			msgs := make([]*message, len(rec.Msgs))
			for i, lm := range rec.Msgs {
				msgs[i] = msgOf(lm)
			}
			e.createSnapshotLocked(pb, nil, when, msgs)
		} else if s := e.subs[rec.Sub]; s != nil {
			e.createSnapshotLocked(pb, s, when, nil)
		}
	case opSnapUpd:
		pb := &pubsubpb.Snapshot{}
		if err := proto.Unmarshal(rec.PB, pb); err != nil {
			return err
		}
		if sn := e.snapshots[pb.Name]; sn != nil {
			sn.pb = pb
		}
	case opSnapDel:
		if e.snapshots[rec.Name] != nil {
			e.deleteSnapshotLocked(rec.Name)
		}
	case opSeek:
		s := e.subs[rec.Name]
		if s == nil {
			return nil
		}
		if rec.Sub != "" {
			if sn := e.snapshots[rec.Sub]; sn != nil {
				s.seekSnapshotLocked(sn)
			}
		} else {
			s.seekTimeLocked(time.Unix(0, rec.Time))
		}
	case opSchemaPut:
		sc, err := schemaFromLog(rec.Name, rec.Revs)
		if err != nil {
			return err
		}
		e.schemas[sc.name] = sc
	case opSchemaDel:
		if e.schemas[rec.Name] != nil {
			e.deleteSchemaLocked(rec.Name)
		}
	default:
		return fmt.Errorf("unknown op %q", rec.Op)
	}
	return nil
}

// compacted returns records that rebuild the current state. Call it
// locked; the records share nothing mutable with the engine.
func (e *engine) compacted() []*logRecord {
	out := []*logRecord{{Op: opHighWater, Seq: e.seq}}
	for _, name := range sortedKeys(e.schemas) {
		out = append(out, e.schemas[name].record())
	}
	for _, name := range sortedKeys(e.topics) {
		out = append(out, &logRecord{Op: opTopicPut, PB: mustMarshal(e.topics[name].pb)})
	}
	type holders struct {
		m           *message
		subs, acked []string
	}
	bySeq := map[uint64]*holders{}
	var attempts []*logRecord
	for _, name := range sortedKeys(e.subs) {
		s := e.subs[name]
		out = append(out, &logRecord{Op: opSubPut, PB: mustMarshal(s.pb), Time: logTime(s.active)})
		var counts *logRecord
		s.msgs.all(func(sm *subMsg) {
			seq := sm.m.seq
			h := bySeq[seq]
			if h == nil {
				h = &holders{m: sm.m}
				bySeq[seq] = h
			}
			h.subs = append(h.subs, name)
			if sm.st == stAcked {
				h.acked = append(h.acked, name)
			} else if sm.attempts > 0 && s.pb.GetDeadLetterPolicy() != nil {
				if counts == nil {
					counts = &logRecord{Op: opAttempts, Name: name}
					attempts = append(attempts, counts)
				}
				counts.Seqs = append(counts.Seqs, seq)
				counts.N = append(counts.N, sm.attempts)
			}
		})
	}
	seqs := make([]uint64, 0, len(bySeq))
	for seq := range bySeq {
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, seq := range seqs {
		h := bySeq[seq]
		out = append(out, publishRecord("", []*message{h.m}, h.subs))
		for _, name := range h.acked {
			out = append(out, &logRecord{Op: opAck, Name: name, Seqs: []uint64{seq}})
		}
	}
	out = append(out, attempts...)
	for _, name := range sortedKeys(e.topics) {
		if t := e.topics[name]; len(t.log) > 0 {
			out = append(out, &logRecord{Op: opTopicLog, Name: name, Msgs: toLogMsgs(t.log)})
		}
	}
	for _, name := range sortedKeys(e.snapshots) {
		sn := e.snapshots[name]
		out = append(out, &logRecord{Op: opSnapPut, PB: mustMarshal(sn.pb), Msgs: toLogMsgs(sn.msgs), Time: logTime(sn.made)})
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

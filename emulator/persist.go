package emulator

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// Records are written (one write call each, no fsync: a kill -9 loses
// nothing the kernel has, a power cut may) before the RPC that made the
// change returns. On start the log is replayed, a torn last line is
// dropped, and the state is written out as a new, compacted log.

const logName = "pubsub.log"

const (
	opTopicPut = "topic"
	opTopicDel = "topic-del"
	opSubPut   = "sub"
	opSubDel   = "sub-del"
	opDetach   = "detach"
	opPublish  = "publish"
	opAck      = "ack"
	opSnapPut  = "snap"
	opSnapUpd  = "snap-upd"
	opSnapDel  = "snap-del"
	opSeek     = "seek"
	opTopicLog = "topic-log" // compacted: a topic's retained messages
)

type logRecord struct {
	Op   string   `json:"op"`
	Name string   `json:"name,omitempty"`
	PB   []byte   `json:"pb,omitempty"`   // a Topic, Subscription or Snapshot
	Sub  string   `json:"sub,omitempty"`  // snap: its subscription; seek: the snapshot
	Msgs []logMsg `json:"msgs,omitempty"` // publish, or a compacted snapshot's messages
	Only []string `json:"only,omitempty"` // publish: only to these subscriptions
	Seqs []uint64 `json:"seqs,omitempty"` // ack
	Time int64    `json:"time,omitempty"` // unix nanos: snapshot time, seek time
}

type logMsg struct {
	Seq   uint64            `json:"seq"`
	Time  int64             `json:"t"`
	Data  []byte            `json:"d,omitempty"`
	Attrs map[string]string `json:"a,omitempty"`
	Key   string            `json:"k,omitempty"`
}

type opLog struct {
	f    *os.File
	lock *os.File // DataDir/LOCK, flocked while the emulator runs
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

// record appends r to the data log, if there is one.
func (e *engine) record(r *logRecord) error {
	if e.log == nil {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return status.Errorf(codes.Internal, "emulator: encoding a log record: %v", err)
	}
	b = append(b, '\n')
	if _, err := e.log.f.Write(b); err != nil {
		return status.Errorf(codes.Internal, "emulator: writing the data log %s: %v", e.log.f.Name(), err)
	}
	return nil
}

func (e *engine) closeLog() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.log == nil {
		return nil
	}
	err := e.log.f.Close()
	e.log.lock.Close() // releases the flock
	e.log = nil
	return err
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
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
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
		err = e.replay(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("emulator: replaying %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("emulator: opening %s: %w", path, err)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("emulator: writing %s: %w", tmp, err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	enc := json.NewEncoder(w)
	for _, r := range e.compacted() {
		if err := enc.Encode(r); err != nil {
			f.Close()
			return fmt.Errorf("emulator: writing %s: %w", tmp, err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("emulator: writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("emulator: syncing %s: %w", tmp, err)
	}
	f.Close()
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("emulator: replacing %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("emulator: opening %s: %w", path, err)
	}
	e.log = &opLog{f: f, lock: lock}
	ok = true
	return nil
}

// replay applies every whole record of r; a torn last record is ignored.
func (e *engine) replay(r io.Reader) error {
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
	for {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			return nil // a line without its newline is a torn write
		}
		if err != nil {
			return err
		}
		var rec logRecord
		if err := json.Unmarshal(line, &rec); err != nil {
			return nil // torn or garbage tail: stop here
		}
		if err := e.apply(&rec, msgOf); err != nil {
			return fmt.Errorf("record %q: %w", rec.Op, err)
		}
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
		e.putSubLocked(pb, f)
	case opSubDel:
		if s := e.subs[rec.Name]; s != nil {
			e.deleteSubLocked(s)
		}
	case opDetach:
		if s := e.subs[rec.Name]; s != nil {
			e.detachLocked(s)
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
	default:
		return fmt.Errorf("unknown op %q", rec.Op)
	}
	return nil
}

// compacted returns records that rebuild the current state.
func (e *engine) compacted() []*logRecord {
	var out []*logRecord
	for _, name := range sortedKeys(e.topics) {
		out = append(out, &logRecord{Op: opTopicPut, PB: mustMarshal(e.topics[name].pb)})
	}
	type holders struct {
		m           *message
		subs, acked []string
	}
	bySeq := map[uint64]*holders{}
	for _, name := range sortedKeys(e.subs) {
		s := e.subs[name]
		out = append(out, &logRecord{Op: opSubPut, PB: mustMarshal(s.pb)})
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
	for _, name := range sortedKeys(e.topics) {
		if t := e.topics[name]; len(t.log) > 0 {
			out = append(out, &logRecord{Op: opTopicLog, Name: name, Msgs: toLogMsgs(t.log)})
		}
	}
	for _, name := range sortedKeys(e.snapshots) {
		sn := e.snapshots[name]
		out = append(out, &logRecord{Op: opSnapPut, PB: mustMarshal(sn.pb), Msgs: toLogMsgs(sn.msgs), Time: sn.made.UnixNano()})
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

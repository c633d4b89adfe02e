package emulator

import (
	"time"
)

// Subscriptions expire after their expiration_policy.ttl without activity
// (a subscription with a connected stream or a waiting Pull is active),
// and snapshots at their expire_time, as in the real service. Both are
// judged on the wall clock (Config.Now): when a resource is looked up or
// listed, and once a minute for all of them.

// touchLocked notes activity on s. The data log hears of it at most once
// an hour of clock time, so that a restart does not forget it for long.
func (s *subscription) touchLocked() {
	now := s.e.now()
	s.active = now
	if s.e.log != nil && now.Sub(s.activeLogged) >= time.Hour {
		s.e.mustRecord(&logRecord{Op: opActive, Name: s.pb.Name, Time: logTime(now)})
		s.activeLogged = now
	}
}

// ttl is s's expiration_policy.ttl; 0 means it never expires.
func (s *subscription) ttl() time.Duration {
	if d := s.pb.GetExpirationPolicy().GetTtl(); d != nil {
		return d.AsDuration()
	}
	return 0
}

// connected reports whether a stream or a Pull is consuming from s (a push
// worker does not count: for push subscriptions successful pushes do).
func (s *subscription) connected() bool {
	for _, c := range s.cons {
		if s.pusher == nil || c != s.pusher.c {
			return true
		}
	}
	return false
}

// expiredSubLocked deletes s, and reports true, if it has expired by now.
func (e *engine) expiredSubLocked(s *subscription, now time.Time) bool {
	ttl := s.ttl()
	if ttl <= 0 {
		return false
	}
	if s.connected() {
		s.touchLocked()
		return false
	}
	if now.Sub(s.active) < ttl {
		return false
	}
	if e.record(&logRecord{Op: opSubDel, Name: s.pb.Name}) != nil {
		return false // kept until the log can say so
	}
	e.deleteSubLocked(s)
	return true
}

// expiredSnapLocked deletes sn, and reports true, if it has expired by now.
func (e *engine) expiredSnapLocked(sn *snapshot, now time.Time) bool {
	if exp := sn.pb.GetExpireTime(); exp == nil || now.Before(exp.AsTime()) {
		return false
	}
	if e.record(&logRecord{Op: opSnapDel, Name: sn.pb.Name}) != nil {
		return false
	}
	e.deleteSnapshotLocked(sn.pb.Name)
	return true
}

// sweepLocked deletes every expired subscription and snapshot.
func (e *engine) sweepLocked() {
	now := e.now()
	for _, s := range e.subs {
		e.expiredSubLocked(s, now)
	}
	for _, sn := range e.snapshots {
		e.expiredSnapLocked(sn, now)
	}
}

// startSweeper sweeps once a minute until shutdown.
func (e *engine) startSweeper() {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-e.stop:
				return
			case <-t.C:
				e.mu.Lock()
				if !e.closed {
					e.sweepLocked()
				}
				e.mu.Unlock()
			}
		}
	}()
}

package emulator

import (
	"slices"
	"sort"
)

// msgIndex holds one subscription's messages (unacked, and acked ones it
// retains) in publish order. It is a sorted slice rather than a map:
// messages arrive in order, so adding is an append; removing marks the
// entry gone and gone entries are dropped in bulk. Lookups by sequence
// number (replay, seek) are binary searches.
type msgIndex struct {
	list []*subMsg
	gone int
}

func (x *msgIndex) find(seq uint64) int {
	return sort.Search(len(x.list), func(i int) bool { return x.list[i].m.seq >= seq })
}

// add stores sm, replacing a gone entry of the same message.
func (x *msgIndex) add(sm *subMsg) {
	if x.gone > 1024 && x.gone > len(x.list)/2 {
		x.compact()
	}
	n := len(x.list)
	if n == 0 || x.list[n-1].m.seq < sm.m.seq {
		x.list = append(x.list, sm)
		return
	}
	i := x.find(sm.m.seq)
	if i < n && x.list[i].m.seq == sm.m.seq {
		if x.list[i].st == stGone {
			x.gone--
		}
		x.list[i] = sm
		return
	}
	x.list = slices.Insert(x.list, i, sm)
}

// get returns the live entry for seq, or nil.
func (x *msgIndex) get(seq uint64) *subMsg {
	i := x.find(seq)
	if i < len(x.list) && x.list[i].m.seq == seq && x.list[i].st != stGone {
		return x.list[i]
	}
	return nil
}

// remove marks sm gone. Safe during all.
func (x *msgIndex) remove(sm *subMsg) {
	if sm.st != stGone {
		sm.st = stGone
		x.gone++
	}
}

// all yields the live entries in publish order; f may remove entries but
// not add them.
func (x *msgIndex) all(f func(*subMsg)) {
	for _, sm := range x.list {
		if sm.st != stGone {
			f(sm)
		}
	}
}

func (x *msgIndex) clear() {
	clear(x.list)
	x.list = x.list[:0]
	x.gone = 0
}

func (x *msgIndex) compact() {
	kept := x.list[:0]
	for _, sm := range x.list {
		if sm.st != stGone {
			kept = append(kept, sm)
		}
	}
	clear(x.list[len(kept):])
	x.list = kept
	x.gone = 0
}

package storekit

import "github.com/courierq/courier/jobs"

// NextBatch waits for one item from in, then takes every item already
// waiting, up to max in all, into batch[:0] (a writer's group commit). ok is
// false when stop closes before an item arrives.
func NextBatch[T any](in <-chan T, stop <-chan struct{}, batch []T, max int) (_ []T, ok bool) {
	batch = batch[:0]
	select {
	case r := <-in:
		batch = append(batch, r)
	case <-stop:
		return batch, false
	}
	return MoreBatch(in, batch, max), true
}

// MoreBatch adds to batch every item already waiting in in, up to max in
// all.
func MoreBatch[T any](in <-chan T, batch []T, max int) []T {
	for len(batch) < max {
		select {
		case r := <-in:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// CutPage trims a List result that was read with one row beyond size and
// returns the token of the next page ("" when that extra row was absent).
func CutPage(out []*jobs.Job, size int) ([]*jobs.Job, string) {
	if len(out) <= size {
		return out, ""
	}
	out = out[:size]
	last := out[size-1]
	return out, EncodeToken(Cursor{CreateTime: last.CreateTime, ID: last.ID})
}

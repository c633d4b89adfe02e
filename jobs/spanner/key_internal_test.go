package spanner

import (
	"fmt"
	"testing"
)

// TestKeysSpread: consecutive time-ordered IDs (UUIDv7 grow with time)
// land in every key shard, none holding more than twice its share, so
// inserts do not all go to the end of one split.
func TestKeysSpread(t *testing.T) {
	const n = 64 * 200
	count := make([]int, keyShards)
	for i := range n {
		// UUIDv7-shaped: a millisecond timestamp that grows, then a counter.
		id := fmt.Sprintf("%08x-%04x-7%03x-8000-%012x", 0x01a22b9a+i/4096, i%4096, i%4096, i)
		s := shardOf(id)
		if s < 0 || s >= keyShards {
			t.Fatalf("shardOf(%q) = %d, want 0..%d", id, s, keyShards-1)
		}
		count[s]++
	}
	for s, c := range count {
		if c == 0 || c > 2*n/keyShards {
			t.Fatalf("shard %d holds %d of %d consecutive IDs; want each near %d", s, c, n, n/keyShards)
		}
	}
}

package publisher

import (
	"fmt"
	"strings"
	"testing"
)

// TestSizeBoundIsAnUpperBound: CheckSize skips EncodedSize when sizeBound
// is within the limit, so sizeBound must never be below it.
func TestSizeBoundIsAnUpperBound(t *testing.T) {
	for _, typ := range []string{"", "a.B", strings.Repeat("t", 300)} {
		for _, n := range []int{0, 1, 127, 128, 16383, 16384, 1 << 20} {
			for _, labels := range []int{0, 1, 64} {
				ls := map[string]string{}
				for i := range labels {
					ls[fmt.Sprintf("k%d%s", i, strings.Repeat("k", i*3))] = strings.Repeat("v", i*40)
				}
				data := make([]byte, n)
				if b, e := sizeBound(typ, data, ls), EncodedSize(typ, data, ls); b < e {
					t.Fatalf("type of %d bytes, %d bytes of data, %d labels: sizeBound %d < EncodedSize %d", len(typ), n, labels, b, e)
				}
			}
		}
	}
}

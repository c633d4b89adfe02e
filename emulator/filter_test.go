package emulator

import "testing"

func TestFilterMatch(t *testing.T) {
	attrs := map[string]string{"color": "red", "size": "L", "dotted.key": "x", "with-dash": "y"}
	cases := []struct {
		filter string
		want   bool
	}{
		{`attributes.color = "red"`, true},
		{`attributes.color = "blue"`, false},
		{`attributes.color != "blue"`, true},
		{`attributes.missing != "blue"`, true},
		{`attributes.color != "red"`, false},
		{`attributes:size`, true},
		{`attributes:missing`, false},
		{`NOT attributes:missing`, true},
		{`-attributes:size`, false},
		{`hasPrefix(attributes.color, "re")`, true},
		{`hasPrefix(attributes.color, "bl")`, false},
		{`hasPrefix(attributes.missing, "")`, false},
		{`attributes.color = "red" AND attributes.size = "L"`, true},
		{`attributes.color = "red" AND attributes.size = "S"`, false},
		{`attributes.color = "blue" OR attributes.size = "L"`, true},
		{`attributes.color = "blue" OR attributes.size = "S"`, false},
		{`(attributes.color = "blue" OR attributes.size = "L") AND NOT attributes:missing`, true},
		{`NOT (attributes.color = "red" AND attributes:size)`, false},
		{`attributes."dotted.key" = "x"`, true},
		{`attributes.with-dash = "y"`, true},
		{`attributes.color = 'red'`, true},
		{`attributes.color = "r\u0065d"`, true},
	}
	for _, c := range cases {
		f, err := parseFilter(c.filter)
		if err != nil {
			t.Errorf("parseFilter(%s): %v", c.filter, err)
			continue
		}
		if got := f.match(attrs); got != c.want {
			t.Errorf("%s on %v = %v, want %v", c.filter, attrs, got, c.want)
		}
	}
}

func TestFilterInvalid(t *testing.T) {
	for _, s := range []string{
		`attributes.color =`,
		`attributes.color == "red"`,
		`color = "red"`,
		`attributes.color = red`,
		`attributes.a = "x" AND attributes.b = "y" OR attributes.c = "z"`,
		`(attributes:a`,
		`attributes:a)`,
		`hasPrefix(attributes.a)`,
		`hasPrefix(attributes.a, "x"`,
		`attributes.a = "unterminated`,
		`NOT`,
		`attributes:a AND`,
		`attributes.a ! "x"`,
		string(make([]byte, 300)),
	} {
		if _, err := parseFilter(s); err == nil {
			t.Errorf("parseFilter(%q) accepted an invalid filter", s)
		}
	}
	if f, err := parseFilter("  "); f != nil || err != nil {
		t.Errorf(`parseFilter("  ") = %v, %v; want no filter`, f, err)
	}
}

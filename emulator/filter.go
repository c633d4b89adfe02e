package emulator

import (
	"fmt"
	"strconv"
	"strings"
)

// filter is a parsed subscription filter. The language is the real
// service's attribute filter: attributes.KEY = "v", attributes.KEY != "v",
// attributes:KEY (has key), hasPrefix(attributes.KEY, "p"), NOT (or "-"),
// AND, OR and parentheses. AND and OR may not be mixed at one level without
// parentheses, as in the real service. Filters are at most 256 bytes.
type filter interface {
	match(attrs map[string]string) bool
}

type (
	filterAnd []filter
	filterOr  []filter
	filterNot struct{ f filter }
	filterHas struct{ key string }
	filterEq  struct {
		key, value string
		not        bool
	}
	filterPrefix struct{ key, prefix string }
)

func (f filterAnd) match(a map[string]string) bool {
	for _, g := range f {
		if !g.match(a) {
			return false
		}
	}
	return true
}

func (f filterOr) match(a map[string]string) bool {
	for _, g := range f {
		if g.match(a) {
			return true
		}
	}
	return false
}

func (f filterNot) match(a map[string]string) bool { return !f.f.match(a) }
func (f filterHas) match(a map[string]string) bool { _, ok := a[f.key]; return ok }

func (f filterEq) match(a map[string]string) bool {
	v, ok := a[f.key]
	if f.not {
		// != is true when the attribute is missing or differs.
		return !ok || v != f.value
	}
	return ok && v == f.value
}

func (f filterPrefix) match(a map[string]string) bool {
	v, ok := a[f.key]
	return ok && strings.HasPrefix(v, f.prefix)
}

// parseFilter parses a filter; "" gives nil (match everything).
func parseFilter(s string) (filter, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	if len(s) > 256 {
		return nil, fmt.Errorf("filter is %d bytes, the limit is 256", len(s))
	}
	toks, err := lexFilter(s)
	if err != nil {
		return nil, err
	}
	p := &filterParser{toks: toks}
	f, err := p.expr()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, fmt.Errorf("unexpected %q at offset %d", p.toks[p.pos].text, p.toks[p.pos].off)
	}
	return f, nil
}

type tokKind int

const (
	tokIdent tokKind = iota // attributes, hasPrefix, AND, OR, NOT, key names
	tokString
	tokOp // = != : . ( ) , -
)

type token struct {
	kind tokKind
	text string
	off  int
}

func lexFilter(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '!':
			if i+1 < len(s) && s[i+1] == '=' {
				toks = append(toks, token{tokOp, "!=", i})
				i += 2
			} else {
				return nil, fmt.Errorf("unexpected '!' at offset %d (did you mean !=?)", i)
			}
		case strings.IndexByte("=:.(),-", c) >= 0:
			toks = append(toks, token{tokOp, string(c), i})
			i++
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string starting at offset %d", i)
			}
			raw := s[i : j+1]
			var v string
			if c == '`' {
				v = raw[1 : len(raw)-1]
			} else {
				if c == '\'' {
					raw = `"` + strings.ReplaceAll(raw[1:len(raw)-1], `"`, `\"`) + `"`
				}
				u, err := strconv.Unquote(raw)
				if err != nil {
					return nil, fmt.Errorf("bad string at offset %d: %v", i, err)
				}
				v = u
			}
			toks = append(toks, token{tokString, v, i})
			i = j + 1
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9':
			j := i
			for j < len(s) {
				d := s[j]
				if d == '_' || d >= 'a' && d <= 'z' || d >= 'A' && d <= 'Z' || d >= '0' && d <= '9' {
					j++
					continue
				}
				break
			}
			toks = append(toks, token{tokIdent, s[i:j], i})
			i = j
		default:
			return nil, fmt.Errorf("unexpected %q at offset %d", c, i)
		}
	}
	return toks, nil
}

type filterParser struct {
	toks []token
	pos  int
}

func (p *filterParser) peek() (token, bool) {
	if p.pos < len(p.toks) {
		return p.toks[p.pos], true
	}
	return token{}, false
}

func (p *filterParser) isWord(w string) bool {
	t, ok := p.peek()
	return ok && t.kind == tokIdent && t.text == w
}

func (p *filterParser) isOp(op string) bool {
	t, ok := p.peek()
	return ok && t.kind == tokOp && t.text == op
}

func (p *filterParser) errHere(want string) error {
	if t, ok := p.peek(); ok {
		return fmt.Errorf("expected %s at offset %d, found %q", want, t.off, t.text)
	}
	return fmt.Errorf("expected %s at the end of the filter", want)
}

// expr := unary { AND unary } | unary { OR unary }
func (p *filterParser) expr() (filter, error) {
	first, err := p.unary()
	if err != nil {
		return nil, err
	}
	var op string
	list := []filter{first}
	for p.isWord("AND") || p.isWord("OR") {
		t, _ := p.peek()
		if op != "" && op != t.text {
			return nil, fmt.Errorf("AND and OR mixed without parentheses at offset %d; group them with ( )", t.off)
		}
		op = t.text
		p.pos++
		f, err := p.unary()
		if err != nil {
			return nil, err
		}
		list = append(list, f)
	}
	switch op {
	case "AND":
		return filterAnd(list), nil
	case "OR":
		return filterOr(list), nil
	}
	return first, nil
}

// unary := (NOT | -) unary | primary
func (p *filterParser) unary() (filter, error) {
	if p.isWord("NOT") || p.isOp("-") {
		p.pos++
		f, err := p.unary()
		if err != nil {
			return nil, err
		}
		return filterNot{f}, nil
	}
	return p.primary()
}

// primary := ( expr ) | hasPrefix ( attributes . KEY , STRING ) |
// attributes : KEY | attributes . KEY (= | !=) STRING
func (p *filterParser) primary() (filter, error) {
	switch {
	case p.isOp("("):
		p.pos++
		f, err := p.expr()
		if err != nil {
			return nil, err
		}
		if !p.isOp(")") {
			return nil, p.errHere("')'")
		}
		p.pos++
		return f, nil
	case p.isWord("hasPrefix"):
		p.pos++
		if !p.isOp("(") {
			return nil, p.errHere("'(' after hasPrefix")
		}
		p.pos++
		if !p.isWord("attributes") {
			return nil, p.errHere("attributes.KEY")
		}
		p.pos++
		if !p.isOp(".") {
			return nil, p.errHere("'.' after attributes")
		}
		p.pos++
		key, err := p.key()
		if err != nil {
			return nil, err
		}
		if !p.isOp(",") {
			return nil, p.errHere("','")
		}
		p.pos++
		t, ok := p.peek()
		if !ok || t.kind != tokString {
			return nil, p.errHere("a quoted prefix")
		}
		p.pos++
		if !p.isOp(")") {
			return nil, p.errHere("')'")
		}
		p.pos++
		return filterPrefix{key, t.text}, nil
	case p.isWord("attributes"):
		p.pos++
		switch {
		case p.isOp(":"):
			p.pos++
			key, err := p.key()
			if err != nil {
				return nil, err
			}
			return filterHas{key}, nil
		case p.isOp("."):
			p.pos++
			key, err := p.key()
			if err != nil {
				return nil, err
			}
			var not bool
			switch {
			case p.isOp("="):
			case p.isOp("!="):
				not = true
			default:
				return nil, p.errHere("= or !=")
			}
			p.pos++
			t, ok := p.peek()
			if !ok || t.kind != tokString {
				return nil, p.errHere("a quoted value")
			}
			p.pos++
			return filterEq{key: key, value: t.text, not: not}, nil
		}
		return nil, p.errHere("'.' or ':' after attributes")
	}
	return nil, p.errHere("attributes, hasPrefix, NOT or '('")
}

// key := IDENT { - IDENT } | STRING
func (p *filterParser) key() (string, error) {
	t, ok := p.peek()
	if !ok || (t.kind != tokIdent && t.kind != tokString) {
		return "", p.errHere("an attribute key")
	}
	p.pos++
	key := t.text
	if t.kind == tokIdent {
		for p.isOp("-") && p.pos+1 < len(p.toks) && p.toks[p.pos+1].kind == tokIdent && p.toks[p.pos].off+1 == p.toks[p.pos+1].off && p.toks[p.pos-1].off+len(p.toks[p.pos-1].text) == p.toks[p.pos].off {
			key += "-" + p.toks[p.pos+1].text
			p.pos += 2
		}
	}
	if key == "" {
		return "", fmt.Errorf("empty attribute key at offset %d", t.off)
	}
	return key, nil
}

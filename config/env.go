package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// EnvPrefix starts the name of every environment variable that sets a
// setting.
const EnvPrefix = "COURIER_"

// EnvName is the environment variable that sets the setting at path (as
// written in the file, e.g. "handlers.ackDeadline"): EnvPrefix, then the
// path's names upper-cased and joined by "_" (COURIER_HANDLERS_ACKDEADLINE).
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// notSettings are COURIER_ variables that are not settings of this file:
// the CLI's and the tests' own, and the older name of store.url.
var notSettings = []string{"COURIER_POSTGRES_URL", "COURIER_ADDR", "COURIER_TOKEN", "COURIER_PROFILE", "COURIER_CONFIG"}

// EnvVars lists every environment variable that sets a setting, with the
// setting's path: COURIER_HANDLERS_ACKDEADLINE → handlers.ackDeadline.
func EnvVars() map[string]string {
	settings := map[string]envSetting{}
	envSettings(reflect.TypeFor[Config](), "", settings)
	out := make(map[string]string, len(settings))
	for name, s := range settings {
		out[name] = s.path
	}
	return out
}

// envSetting is one setting that a variable can set.
type envSetting struct {
	path string
	typ  reflect.Type
}

// envSettings lists every setting of t (a struct type) that an environment
// variable can set, by variable name: each scalar, list, map and value with
// a JSON form of its own (durations, http.dashboard), found through nested
// sections (pointers to sections included: setting one of their fields
// turns the section on).
func envSettings(t reflect.Type, path string, out map[string]envSetting) {
	for name, idx := range jsonFields(t) {
		ft := t.FieldByIndex(idx).Type
		p := join(path, name)
		st := ft
		if st.Kind() == reflect.Pointer {
			st = st.Elem()
		}
		if st.Kind() == reflect.Struct && !reflect.PointerTo(st).Implements(unmarshalerType) {
			envSettings(st, p, out)
			continue
		}
		out[EnvName(p)] = envSetting{path: p, typ: ft}
	}
}

// envJSON turns a variable's text into the JSON that the setting's type
// decodes: strings (and values that read strings, such as durations) as
// written; lists and maps as YAML or JSON ("[a, b]", "{k: v}"), a list of
// strings also as "a,b"; true/false and numbers as written.
func envJSON(typ reflect.Type, v string) (json.RawMessage, error) {
	t := typ
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	flow := strings.HasPrefix(strings.TrimSpace(v), "{") || strings.HasPrefix(strings.TrimSpace(v), "[")
	switch {
	case flow && t.Kind() != reflect.String:
		js, err := yaml.YAMLToJSONStrict([]byte(v))
		if err != nil {
			return nil, fmt.Errorf("not valid YAML or JSON: %w", err)
		}
		return js, nil
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		var parts []string
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		return json.Marshal(parts)
	case t.Kind() == reflect.String || reflect.PointerTo(t).Implements(unmarshalerType):
		return json.Marshal(v)
	}
	raw := json.RawMessage(strings.TrimSpace(v))
	if !json.Valid(raw) {
		return json.Marshal(v) // the decoder then says what it wanted
	}
	return raw, nil
}

// EnvError is a variable whose value its setting refuses.
type EnvError struct {
	Var  string // e.g. COURIER_HANDLERS_ACKDEADLINE
	Path string // e.g. handlers.ackDeadline
	Err  error
}

func (e *EnvError) Error() string {
	msg := strings.TrimPrefix(e.Err.Error(), "config: ")
	msg = strings.TrimPrefix(msg, e.Path+": ")
	return fmt.Sprintf("config: $%s (%s): %s", e.Var, e.Path, msg)
}

func (e *EnvError) Unwrap() error { return e.Err }

// ApplyEnv sets, over c, the settings that environ's variables name
// (environ as os.Environ gives it: "NAME=value"). The rule: a setting's
// variable is COURIER_ and its path in the file, upper-cased, with "_" for
// each "." (EnvName). A map or list is set whole by one variable, as YAML
// or JSON (COURIER_HANDLERS_TYPES='{courier.demo.v1.Echo: {maxAttempts:
// 3}}' sets the entries it names); a list of strings may also be written
// "a,b". Map entries have no variable of their own: their keys (type
// names) hold dots. It returns the COURIER_ variables that name no setting,
// so that a caller can warn of a typo, and an *EnvError for a value its
// setting refuses. It does not validate: Validate does.
func (c *Config) ApplyEnv(environ []string) (unknown []string, err error) {
	settings := map[string]envSetting{}
	envSettings(reflect.TypeFor[Config](), "", settings)
	var errs []error
	for _, kv := range slices.Sorted(slices.Values(environ)) {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		s, ok := settings[name]
		if !ok {
			if !slices.Contains(notSettings, name) && !strings.HasPrefix(name, EnvPrefix+"TEST_") {
				unknown = append(unknown, name)
			}
			continue
		}
		raw, err := envJSON(s.typ, val)
		if err == nil {
			err = decodeValue("", nest(s.path, raw), reflect.ValueOf(c).Elem())
		}
		if err != nil {
			errs = append(errs, &EnvError{Var: name, Path: s.path, Err: err})
		}
	}
	return unknown, errors.Join(errs...)
}

// nest wraps raw in objects along path: "a.b" gives {"a":{"b":raw}}.
func nest(path string, raw json.RawMessage) json.RawMessage {
	parts := strings.Split(path, ".")
	for i := len(parts) - 1; i >= 0; i-- {
		k, _ := json.Marshal(parts[i])
		raw = json.RawMessage(fmt.Sprintf("{%s:%s}", k, raw))
	}
	return raw
}

// ParseEnv decodes data, applies environ's COURIER_ variables over it
// (ApplyEnv) and validates the result; a validation error of a setting
// that a variable set names the variable too. It returns the COURIER_
// variables that name no setting. With environ nil it is Parse.
func ParseEnv(data []byte, environ []string) (*Config, []string, error) {
	var c Config
	if err := decode(data, &c); err != nil {
		return nil, nil, err
	}
	unknown, err := c.ApplyEnv(environ)
	if err != nil {
		return nil, unknown, err
	}
	if err := c.Validate(); err != nil {
		return nil, unknown, nameVars(err, environ)
	}
	return &c, unknown, nil
}

// nameVars adds to each ValidationError of a setting set by a variable the
// variable's name.
func nameVars(err error, environ []string) error {
	set := map[string]bool{}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		set[name] = true
	}
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	for _, e := range list {
		var ve *ValidationError
		if !errors.As(e, &ve) {
			continue
		}
		// handlers.types.a.B.burst is set by COURIER_HANDLERS_TYPES.
		for p := ve.Field; p != ""; p = parent(p) {
			if set[EnvName(p)] {
				ve.Env = EnvName(p)
				break
			}
		}
	}
	return err
}

func parent(path string) string {
	i := strings.LastIndex(path, ".")
	if i < 0 {
		return ""
	}
	return path[:i]
}

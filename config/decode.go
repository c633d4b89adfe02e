package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// decode reads a YAML (or JSON) document into v strictly: an unknown field,
// a value of the wrong kind or one that its type refuses is an error that
// names the field by its path in the file (e.g. "jobs.retention"), never by
// a Go name. encoding/json alone reports Go struct names and loses the path
// of errors from custom unmarshalers, hence this walk.
func decode(data []byte, v any) error {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return fmt.Errorf("config: not valid YAML: %w", err)
	}
	if len(bytes.TrimSpace(js)) == 0 || string(bytes.TrimSpace(js)) == "null" {
		return nil // an empty file: all defaults
	}
	return decodeValue("", js, reflect.ValueOf(v).Elem())
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

func decodeValue(path string, raw json.RawMessage, v reflect.Value) error {
	where := path
	if where == "" {
		where = "(top level)"
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(raw); err != nil {
			return fmt.Errorf("config: %s: %s", where, unwrapJSON(err))
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		if string(raw) == "null" {
			v.SetZero()
			return nil
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return decodeValue(path, raw, v.Elem())
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil || obj == nil && string(raw) != "null" {
			return fmt.Errorf("config: %s: want a mapping of fields, got %s", where, short(raw))
		}
		fields := jsonFields(v.Type())
		for _, key := range sortedKeys(obj) {
			idx, ok := fields[key]
			if !ok {
				// encoding/json matches names case-insensitively; so do we,
				// so that configs that worked keep working.
				for name, i := range fields {
					if strings.EqualFold(name, key) {
						idx, ok = i, true
						break
					}
				}
			}
			if !ok {
				return fmt.Errorf("config: %s: unknown field; valid fields here: %s", join(path, key), strings.Join(sortedKeys(fields), ", "))
			}
			if err := decodeValue(join(path, key), obj[key], v.FieldByIndex(idx)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if string(raw) == "null" {
			return nil
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return fmt.Errorf("config: %s: want a mapping, got %s", where, short(raw))
		}
		if v.IsNil() {
			v.Set(reflect.MakeMapWithSize(v.Type(), len(obj)))
		}
		for _, key := range sortedKeys(obj) {
			elem := reflect.New(v.Type().Elem()).Elem()
			if err := decodeValue(join(path, key), obj[key], elem); err != nil {
				return err
			}
			v.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), elem)
		}
		return nil
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 { // []byte: base64 as encoding/json
			break
		}
		if string(raw) == "null" {
			return nil
		}
		var arr []json.RawMessage
		if err := json.Unmarshal(raw, &arr); err != nil {
			return fmt.Errorf("config: %s: want a list, got %s", where, short(raw))
		}
		s := reflect.MakeSlice(v.Type(), len(arr), len(arr))
		for i, r := range arr {
			if err := decodeValue(fmt.Sprintf("%s[%d]", path, i), r, s.Index(i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	}
	if err := json.Unmarshal(raw, v.Addr().Interface()); err != nil {
		return fmt.Errorf("config: %s: want %s, got %s", where, kindName(v.Type()), short(raw))
	}
	return nil
}

// jsonFields maps the JSON names of t's fields (from their json tags, as
// encoding/json names them) to their indexes; fields tagged "-" are left
// out, embedded structs' fields are promoted.
func jsonFields(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for n, idx := range jsonFields(f.Type) {
				out[n] = append([]int{i}, idx...)
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = []int{i}
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func short(raw json.RawMessage) string {
	s := string(raw)
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a value of type " + t.String()
}

// unwrapJSON drops encoding/json's Go-flavoured prefixes from an error that
// a custom unmarshaler returned.
func unwrapJSON(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("want %s, got a %s", kindName(te.Type), te.Value)
	}
	return err.Error()
}

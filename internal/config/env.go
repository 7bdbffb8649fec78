package config

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// EnvPrefix starts every environment override.
const EnvPrefix = "THREATBUS_"

// section is one config table and the Go value it decodes into.
type section struct {
	prefix []string // e.g. ["apps", "zmq"]
	value  any      // pointer to a struct
}

// leaf is one settable value of a section.
type leaf struct {
	key      []string // full TOML key
	field    reflect.StructField
	value    reflect.Value
	required bool
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// leaves lists the settable values of v (a pointer to a struct), descending
// into nested structs that are tables rather than values.
func leaves(prefix []string, v any) []leaf {
	var out []leaf
	var walk func(key []string, rv reflect.Value)
	walk = func(key []string, rv reflect.Value) {
		rt := rv.Type()
		for i := 0; i < rt.NumField(); i++ {
			f := rt.Field(i)
			if !f.IsExported() {
				continue
			}
			name := f.Tag.Get("toml")
			if i := strings.Index(name, ","); i >= 0 {
				name = name[:i]
			}
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			k := append(append([]string{}, key...), name)
			fv := rv.Field(i)
			if f.Type.Kind() == reflect.Struct && !reflect.PointerTo(f.Type).Implements(textUnmarshaler) {
				walk(k, fv)
				continue
			}
			out = append(out, leaf{key: k, field: f, value: fv, required: f.Tag.Get("required") == "true"})
		}
	}
	walk(prefix, reflect.ValueOf(v).Elem())
	return out
}

// envName is the variable that overrides key: THREATBUS_APPS_ZMQ_MANAGE.
func envName(key []string) string {
	s := strings.ToUpper(strings.Join(key, "_"))
	return EnvPrefix + strings.NewReplacer("-", "_", ".", "_").Replace(s)
}

// applyEnv sets every value named by a THREATBUS_* variable. It returns the
// dotted keys it set, and an error for each variable that names nothing or
// holds a bad value.
func applyEnv(sections []section, environ []string) (map[string]bool, []error) {
	byName := map[string]leaf{}
	for _, s := range sections {
		for _, l := range leaves(s.prefix, s.value) {
			byName[envName(l.key)] = l
		}
	}
	set := map[string]bool{}
	var errs []error
	vars := append([]string{}, environ...)
	sort.Strings(vars)
	for _, kv := range vars {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		l, ok := byName[name]
		if !ok {
			errs = append(errs, &Error{File: "environment", Key: name, Msg: "names no setting of an enabled section (a plugin's variables apply only when its table is in the file)"})
			continue
		}
		if err := setFromString(l.value, val); err != nil {
			errs = append(errs, &Error{File: "environment", Key: name, Msg: fmt.Sprintf("%s: %v", strings.Join(l.key, "."), err)})
			continue
		}
		set[strings.Join(l.key, ".")] = true
	}
	return set, errs
}

// setFromString parses s as a value of v's type: text types parse themselves,
// strings are taken as they are, anything else is read as a TOML value (so
// `[1, 2]`, `true`, `3.5`); a list of strings also accepts `a,b,c`.
func setFromString(v reflect.Value, s string) error {
	if tu, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return tu.UnmarshalText([]byte(s))
	}
	switch {
	case v.Kind() == reflect.String:
		v.SetString(s)
		return nil
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String && !strings.HasPrefix(strings.TrimSpace(s), "["):
		parts := strings.Split(s, ",")
		sl := reflect.MakeSlice(v.Type(), 0, len(parts))
		for _, p := range parts {
			if p = strings.TrimSpace(p); p != "" {
				sl = reflect.Append(sl, reflect.ValueOf(p).Convert(v.Type().Elem()))
			}
		}
		v.Set(sl)
		return nil
	}
	holder := reflect.New(reflect.StructOf([]reflect.StructField{{
		Name: "V", Type: v.Type(), Tag: `toml:"v"`,
	}}))
	if _, err := toml.Decode("v = "+s, holder.Interface()); err != nil {
		return fmt.Errorf("cannot parse %q as %s", s, v.Type())
	}
	v.Set(holder.Elem().Field(0))
	return nil
}

// missingRequired returns the required keys of s that neither the file nor
// the environment set.
func missingRequired(s section, md toml.MetaData, fromEnv map[string]bool) []string {
	var missing []string
	for _, l := range leaves(s.prefix, s.value) {
		if !l.required {
			continue
		}
		key := strings.Join(l.key, ".")
		if md.IsDefined(l.key...) || fromEnv[key] {
			continue
		}
		missing = append(missing, key)
	}
	return missing
}

package stix

import (
	"fmt"
	"strconv"
	"strings"
)

// StepKind is the kind of one object path step.
type StepKind uint8

const (
	StepKey      StepKind = iota // .name or .'quoted name'
	StepIndex                    // [n]
	StepAnyIndex                 // [*]
)

// PathStep is one step of an object path after the object type. Key is the
// property name, unquoted and unescaped.
type PathStep struct {
	Kind  StepKind
	Key   string
	Index int64
}

// ObjectPath is "type:prop.sub[*].'quoted key'". Steps[0] is always a key.
type ObjectPath struct {
	Type  string
	Steps []PathStep
}

// NewObjectPath builds an object path from plain property names. It checks
// what the grammar requires so that the path can always be printed into a
// pattern that parses.
func NewObjectPath(objectType string, keys ...string) (ObjectPath, error) {
	if !isPatternObjectType(objectType) {
		return ObjectPath{}, fmt.Errorf("stix pattern: %q is not a valid object type", objectType)
	}
	if len(keys) == 0 {
		return ObjectPath{}, fmt.Errorf("stix pattern: object path for %q has no property", objectType)
	}
	p := ObjectPath{Type: objectType, Steps: make([]PathStep, len(keys))}
	for i, k := range keys {
		p.Steps[i] = PathStep{Kind: StepKey, Key: k}
	}
	return p, nil
}

// isPatternObjectType is the grammar's objectType: an identifier, hyphens
// allowed after the first character, and not a keyword.
func isPatternObjectType(t string) bool {
	if t == "" || !isIdentStart(t[0]) {
		return false
	}
	hyphen := false
	for i := 1; i < len(t); i++ {
		if t[i] == '-' {
			hyphen = true
		} else if !isIdentChar(t[i]) {
			return false
		}
	}
	if hyphen {
		return true
	}
	_, kw := keyword(t)
	return !kw
}

// isPlainKey says whether a property name can be written without quotes:
// an IdentifierWithoutHyphen that the lexer would not read as a keyword.
func isPlainKey(k string) bool {
	if k == "" || !isIdentStart(k[0]) {
		return false
	}
	for i := 1; i < len(k); i++ {
		if !isIdentChar(k[i]) {
			return false
		}
	}
	_, kw := keyword(k)
	return !kw
}

func (p ObjectPath) String() string {
	var b strings.Builder
	b.WriteString(p.Type)
	b.WriteByte(':')
	for i, s := range p.Steps {
		switch s.Kind {
		case StepKey:
			if i > 0 {
				b.WriteByte('.')
			}
			if isPlainKey(s.Key) {
				b.WriteString(s.Key)
			} else {
				b.WriteString(quotePattern(s.Key))
			}
		case StepIndex:
			b.WriteString("[" + strconv.FormatInt(s.Index, 10) + "]")
		case StepAnyIndex:
			b.WriteString("[*]")
		}
	}
	return b.String()
}

// Canonical returns the path in the form used to compare paths: the object
// type in lower case and hash algorithm names (the key after "hashes") in the
// STIX hashing-algorithm vocabulary, so that file:hashes.'SHA-256',
// file:hashes.'sha-256', file:hashes.SHA256 and file:hashes.sha256 are all
// file:hashes.'SHA-256'. Other property names are case-sensitive in STIX and
// stay as they are.
func (p ObjectPath) Canonical() ObjectPath {
	c := ObjectPath{Type: strings.ToLower(p.Type), Steps: make([]PathStep, len(p.Steps))}
	copy(c.Steps, p.Steps)
	for i := 1; i < len(c.Steps); i++ {
		prev := c.Steps[i-1]
		if c.Steps[i].Kind == StepKey && prev.Kind == StepKey && prev.Key == "hashes" {
			if h, ok := lookupHash(c.Steps[i].Key); ok {
				c.Steps[i].Key = h.name
			}
		}
	}
	return c
}

// Equal reports whether two paths name the same property (see Canonical).
func (p ObjectPath) Equal(q ObjectPath) bool {
	a, b := p.Canonical(), q.Canonical()
	if a.Type != b.Type || len(a.Steps) != len(b.Steps) {
		return false
	}
	for i := range a.Steps {
		if a.Steps[i] != b.Steps[i] {
			return false
		}
	}
	return true
}

type hashAlgo struct {
	name    string
	lengths []int // valid hex lengths; nil = not checked by length
	ssdeep  bool
}

// hashAlgos is keyed by the name upper-cased with '-' and '_' removed. The
// first eight are the STIX 2.1 hashing-algorithm-ov; the rest are the
// algorithms the OASIS pattern validator also checks.
var hashAlgos = map[string]hashAlgo{
	"MD5":       {name: "MD5", lengths: []int{32}},
	"SHA1":      {name: "SHA-1", lengths: []int{40}},
	"SHA256":    {name: "SHA-256", lengths: []int{64}},
	"SHA512":    {name: "SHA-512", lengths: []int{128}},
	"SHA3256":   {name: "SHA3-256", lengths: []int{64}},
	"SHA3512":   {name: "SHA3-512", lengths: []int{128}},
	"SSDEEP":    {name: "SSDEEP", ssdeep: true},
	"TLSH":      {name: "TLSH"}, // T1-prefixed and legacy forms differ in length
	"SHA224":    {name: "SHA-224", lengths: []int{56}},
	"SHA384":    {name: "SHA-384", lengths: []int{96}},
	"SHA3224":   {name: "SHA3-224", lengths: []int{56}},
	"SHA3384":   {name: "SHA3-384", lengths: []int{96}},
	"RIPEMD160": {name: "RIPEMD-160", lengths: []int{40}},
	"WHIRLPOOL": {name: "WHIRLPOOL", lengths: []int{128}},
	"MD6":       {name: "MD6", lengths: []int{32, 40, 56, 64, 96, 128}},
}

func lookupHash(key string) (hashAlgo, bool) {
	var buf [16]byte
	n := 0
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '-' || c == '_' {
			continue
		}
		if n == len(buf) {
			return hashAlgo{}, false
		}
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		buf[n] = c
		n++
	}
	h, ok := hashAlgos[string(buf[:n])]
	return h, ok
}

// checkHashValue rejects values that cannot be a hash of the named
// algorithm, as the OASIS validator does ("[file:hashes.'SHA-256' = 'f00']"
// is invalid), because such an indicator can never match and usually means
// a broken mapping upstream.
func (h hashAlgo) check(v string) error {
	if h.ssdeep {
		if len(v) < 1 || len(v) > 128 {
			return fmt.Errorf("'%s' is not a valid %s hash", v, h.name)
		}
		for i := 0; i < len(v); i++ {
			c := v[i]
			if !(isIdentChar(c) && c != '_' || c == '/' || c == '+' || c == ':' || c == '.') {
				return fmt.Errorf("'%s' is not a valid %s hash", v, h.name)
			}
		}
		return nil
	}
	if h.lengths == nil {
		return nil
	}
	okLen := false
	for _, n := range h.lengths {
		okLen = okLen || len(v) == n
	}
	for i := 0; okLen && i < len(v); i++ {
		okLen = isHex(v[i])
	}
	if !okLen {
		return fmt.Errorf("'%s' is not a valid %s hash", v, h.name)
	}
	return nil
}

// hashAlgoOf returns the algorithm when the path ends in hashes.<algo>.
func (p ObjectPath) hashAlgoOf() (hashAlgo, bool) {
	n := len(p.Steps)
	if n < 2 || p.Steps[n-1].Kind != StepKey {
		return hashAlgo{}, false
	}
	hashes := false
	for _, s := range p.Steps[:n-1] {
		hashes = hashes || s.Kind == StepKey && s.Key == "hashes"
	}
	if !hashes {
		return hashAlgo{}, false
	}
	return lookupHash(p.Steps[n-1].Key)
}

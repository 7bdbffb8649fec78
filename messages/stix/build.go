package stix

import (
	"errors"
	"fmt"
)

// PointIoC reports whether p is a point IoC — exactly one observation with
// exactly one "=" comparison, not negated, no qualifiers, only redundant
// parentheses around either — and returns its canonical object path and the
// compared value (the unescaped string, or a non-string literal as written).
// Sinks such as Zeek's intel framework can only match these.
func PointIoC(p *Pattern) (path ObjectPath, value string, ok bool) {
	if p == nil {
		return ObjectPath{}, "", false
	}
	obs := p.Root
	for {
		g, isGroup := obs.(*ObservationGroup)
		if !isGroup {
			break
		}
		if len(g.Qualifiers) > 0 {
			return ObjectPath{}, "", false
		}
		obs = g.Expr
	}
	o, isObs := obs.(*Observation)
	if !isObs || len(o.Qualifiers) > 0 {
		return ObjectPath{}, "", false
	}
	cmp := o.Expr
	for {
		g, isGroup := cmp.(*ComparisonGroup)
		if !isGroup {
			break
		}
		cmp = g.Expr
	}
	c, isCmp := cmp.(*Comparison)
	if !isCmp || c.Op != OpEqual || c.Negated {
		return ObjectPath{}, "", false
	}
	return c.Path.Canonical(), c.Value.Value, true
}

// Equals builds the comparison objectType:path[0].path[1]… = 'value'. Path
// steps that are not plain identifiers (or are keywords) are quoted, and '
// and \ in the value are escaped, so the result always parses.
func Equals(objectType string, path []string, value string) (*Comparison, error) {
	op, err := NewObjectPath(objectType, path...)
	if err != nil {
		return nil, err
	}
	return &Comparison{Path: op, Op: OpEqual, Value: StringLiteral(value)}, nil
}

// EqualsPath builds path = 'value' for paths with list steps, such as
// domain-name:resolves_to_refs[*].value.
func EqualsPath(path ObjectPath, value string) (*Comparison, error) {
	if !isPatternObjectType(path.Type) {
		return nil, fmt.Errorf("stix pattern: %q is not a valid object type", path.Type)
	}
	if len(path.Steps) == 0 || path.Steps[0].Kind != StepKey {
		return nil, fmt.Errorf("stix pattern: object path %s must start with a property name", path)
	}
	return &Comparison{Path: path, Op: OpEqual, Value: StringLiteral(value)}, nil
}

// And joins comparisons with AND, e.g. the two halves of a MISP
// "domain|ip" attribute.
func And(exprs ...ComparisonExpr) ComparisonExpr { return joinCmp(BoolAnd, exprs) }

// Or joins comparisons with OR.
func Or(exprs ...ComparisonExpr) ComparisonExpr { return joinCmp(BoolOr, exprs) }

func joinCmp(op BoolOperator, exprs []ComparisonExpr) ComparisonExpr {
	var flat []ComparisonExpr
	for _, e := range exprs {
		if c, ok := e.(*ComparisonOp); ok && c.Op == op {
			flat = append(flat, c.Operands...)
			continue
		}
		flat = append(flat, e)
	}
	switch len(flat) {
	case 0:
		return nil
	case 1:
		return flat[0]
	}
	return &ComparisonOp{Op: op, Operands: flat}
}

// NewPattern wraps expr in one observation, "[expr]". The result is the
// parse of its own rendering, so a pattern built here is by construction one
// that Parse (and every other STIX consumer) accepts.
func NewPattern(expr ComparisonExpr) (*Pattern, error) {
	if err := checkCmpTree(expr); err != nil {
		return nil, err
	}
	s := "[" + expr.String() + "]"
	p, err := Parse(s)
	if err != nil {
		return nil, fmt.Errorf("stix pattern: built %q, which does not parse: %w", s, err)
	}
	return p, nil
}

var errEmptyExpr = errors.New("stix pattern: empty comparison expression")

func checkCmpTree(e ComparisonExpr) error {
	switch e := e.(type) {
	case nil:
		return errEmptyExpr
	case *ComparisonOp:
		if e == nil || len(e.Operands) == 0 {
			return errEmptyExpr
		}
		for _, o := range e.Operands {
			if err := checkCmpTree(o); err != nil {
				return err
			}
		}
	case *ComparisonGroup:
		if e == nil {
			return errEmptyExpr
		}
		return checkCmpTree(e.Expr)
	case *Comparison:
		if e == nil || len(e.Path.Steps) == 0 {
			return errEmptyExpr
		}
	}
	return nil
}

// EqualityPattern returns the point-IoC pattern
// [objectType:path… = 'value'], e.g. [ipv4-addr:value = '6.6.6.6'] or
// [file:hashes.'SHA-256' = 'aec0…'].
func EqualityPattern(objectType string, path []string, value string) (string, error) {
	c, err := Equals(objectType, path, value)
	if err != nil {
		return "", err
	}
	p, err := NewPattern(c)
	if err != nil {
		return "", err
	}
	return p.String(), nil
}

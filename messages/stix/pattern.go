package stix

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Pattern is a parsed STIX 2.1 pattern.
type Pattern struct {
	Root ObservationExpr
}

// ObservationExpr is one of *ObservationOp, *Observation, *ObservationGroup.
type ObservationExpr interface {
	String() string
	isObservationExpr()
}

// ComparisonExpr is one of *ComparisonOp, *ComparisonGroup, *Comparison.
type ComparisonExpr interface {
	String() string
	isComparisonExpr()
}

// ObservationOperator joins observation expressions. The order of the
// constants is their binding strength: FOLLOWEDBY binds loosest, AND
// tightest, as in the grammar.
type ObservationOperator uint8

const (
	ObsFollowedBy ObservationOperator = iota
	ObsOr
	ObsAnd
)

func (o ObservationOperator) String() string {
	return [...]string{"FOLLOWEDBY", "OR", "AND"}[o]
}

// ObservationOp is a chain of two or more operands joined by one operator.
// Chains are kept flat (n-ary) so that a long "A AND B AND …" costs no
// recursion depth anywhere.
type ObservationOp struct {
	Op       ObservationOperator
	Operands []ObservationExpr
}

// Observation is "[ comparison ]" with its qualifiers.
type Observation struct {
	Expr       ComparisonExpr
	Qualifiers []Qualifier
}

// ObservationGroup is "( observations )" with its qualifiers. It is kept in
// the tree because qualifier rules differ: a group may repeat a qualifier
// kind, a bare observation may not.
type ObservationGroup struct {
	Expr       ObservationExpr
	Qualifiers []Qualifier
}

func (*ObservationOp) isObservationExpr()    {}
func (*Observation) isObservationExpr()      {}
func (*ObservationGroup) isObservationExpr() {}

// QualifierKind is WITHIN, REPEATS or START…STOP.
type QualifierKind uint8

const (
	QualifierWithin QualifierKind = iota
	QualifierRepeats
	QualifierStartStop
)

// Qualifier restricts an observation expression.
type Qualifier struct {
	Kind  QualifierKind
	Value Literal // WITHIN seconds (int or float), REPEATS times (int)
	Start Literal // START timestamp
	Stop  Literal // STOP timestamp
}

func (q Qualifier) String() string {
	switch q.Kind {
	case QualifierWithin:
		return "WITHIN " + q.Value.Raw + " SECONDS"
	case QualifierRepeats:
		return "REPEATS " + q.Value.Raw + " TIMES"
	}
	return "START " + q.Start.Raw + " STOP " + q.Stop.Raw
}

// BoolOperator joins comparisons inside brackets; OR binds looser than AND.
type BoolOperator uint8

const (
	BoolOr BoolOperator = iota
	BoolAnd
)

func (o BoolOperator) String() string { return [...]string{"OR", "AND"}[o] }

// ComparisonOp is a flat chain of two or more comparisons.
type ComparisonOp struct {
	Op       BoolOperator
	Operands []ComparisonExpr
}

// ComparisonGroup is "( comparison )" inside brackets.
type ComparisonGroup struct {
	Expr ComparisonExpr
}

// Operator is a comparison operator.
type Operator uint8

const (
	OpEqual Operator = iota
	OpNotEqual
	OpLess
	OpLessEqual
	OpGreater
	OpGreaterEqual
	OpIn
	OpLike
	OpMatches
	OpIsSubset
	OpIsSuperset
	OpExists
)

var operatorNames = [...]string{"=", "!=", "<", "<=", ">", ">=", "IN", "LIKE", "MATCHES", "ISSUBSET", "ISSUPERSET", "EXISTS"}

func (o Operator) String() string { return operatorNames[o] }

// Comparison is one property test: Path [NOT] Op Value, Path [NOT] IN Set,
// or EXISTS Path.
type Comparison struct {
	Path    ObjectPath
	Negated bool
	Op      Operator
	Value   Literal   // unused for IN and EXISTS
	Set     []Literal // IN only
}

func (*ComparisonOp) isComparisonExpr()    {}
func (*ComparisonGroup) isComparisonExpr() {}
func (*Comparison) isComparisonExpr()      {}

// LiteralKind is the type of a literal.
type LiteralKind uint8

const (
	LitString LiteralKind = iota
	LitInt
	LitFloat
	LitBool
	LitBinary
	LitHex
	LitTimestamp
)

// Literal is a constant in a pattern. Raw is its source form (quotes,
// prefix, escapes and all) and is what String prints; Value is the payload:
// the unescaped string, the number as written, "true"/"false", the base64
// or hex digits, or the timestamp text.
type Literal struct {
	Kind  LiteralKind
	Raw   string
	Value string
}

func (l Literal) String() string { return l.Raw }

// Int returns an integer literal's value.
func (l Literal) Int() (int64, error) {
	if l.Kind != LitInt {
		return 0, fmt.Errorf("stix pattern: %s is not an integer", l.Raw)
	}
	return strconv.ParseInt(strings.TrimPrefix(l.Value, "+"), 10, 64)
}

// Float returns a numeric literal's value.
func (l Literal) Float() (float64, error) {
	if l.Kind != LitInt && l.Kind != LitFloat {
		return 0, fmt.Errorf("stix pattern: %s is not a number", l.Raw)
	}
	return strconv.ParseFloat(l.Value, 64)
}

// Bytes returns the bytes of a binary or hex literal.
func (l Literal) Bytes() ([]byte, error) {
	switch l.Kind {
	case LitBinary:
		return base64.StdEncoding.DecodeString(l.Value)
	case LitHex:
		return hex.DecodeString(l.Value)
	}
	return nil, fmt.Errorf("stix pattern: %s is not a binary or hex literal", l.Raw)
}

// Time returns a timestamp literal's instant.
func (l Literal) Time() (time.Time, error) {
	if l.Kind != LitTimestamp {
		return time.Time{}, fmt.Errorf("stix pattern: %s is not a timestamp", l.Raw)
	}
	return parseTimestamp(l.Value, true)
}

// StringLiteral makes a string literal for value, escaping ' and \.
func StringLiteral(value string) Literal {
	return Literal{Kind: LitString, Raw: quotePattern(value), Value: value}
}

func quotePattern(v string) string {
	if !strings.ContainsAny(v, `'\`) {
		return "'" + v + "'"
	}
	var b strings.Builder
	b.Grow(len(v) + 4)
	b.WriteByte('\'')
	for i := 0; i < len(v); i++ {
		if v[i] == '\'' || v[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('\'')
	return b.String()
}

// String renders the pattern in a normal form: single spaces, and
// parentheses exactly where the tree needs them. Parse(p.String()) yields
// the same tree.
func (p *Pattern) String() string {
	if p == nil || p.Root == nil {
		return ""
	}
	return p.Root.String()
}

func obsPrec(e ObservationExpr) int {
	if op, ok := e.(*ObservationOp); ok {
		return int(op.Op)
	}
	return 99
}

func (o *ObservationOp) String() string {
	var b strings.Builder
	for i, e := range o.Operands {
		if i > 0 {
			b.WriteString(" " + o.Op.String() + " ")
		}
		// A nested chain of the same or a looser operator needs
		// parentheses to keep its shape.
		if obsPrec(e) <= int(o.Op) {
			b.WriteString("(" + e.String() + ")")
		} else {
			b.WriteString(e.String())
		}
	}
	return b.String()
}

func writeQualifiers(b *strings.Builder, qs []Qualifier) {
	for _, q := range qs {
		b.WriteByte(' ')
		b.WriteString(q.String())
	}
}

func (o *Observation) String() string {
	var b strings.Builder
	b.WriteByte('[')
	b.WriteString(o.Expr.String())
	b.WriteByte(']')
	writeQualifiers(&b, o.Qualifiers)
	return b.String()
}

func (g *ObservationGroup) String() string {
	var b strings.Builder
	b.WriteByte('(')
	b.WriteString(g.Expr.String())
	b.WriteByte(')')
	writeQualifiers(&b, g.Qualifiers)
	return b.String()
}

func cmpPrec(e ComparisonExpr) int {
	if op, ok := e.(*ComparisonOp); ok {
		return int(op.Op)
	}
	return 99
}

func (c *ComparisonOp) String() string {
	var b strings.Builder
	for i, e := range c.Operands {
		if i > 0 {
			b.WriteString(" " + c.Op.String() + " ")
		}
		if cmpPrec(e) <= int(c.Op) {
			b.WriteString("(" + e.String() + ")")
		} else {
			b.WriteString(e.String())
		}
	}
	return b.String()
}

func (g *ComparisonGroup) String() string { return "(" + g.Expr.String() + ")" }

func (c *Comparison) String() string {
	if c.Op == OpExists {
		return "EXISTS " + c.Path.String()
	}
	var b strings.Builder
	b.WriteString(c.Path.String())
	if c.Negated {
		b.WriteString(" NOT")
	}
	b.WriteByte(' ')
	b.WriteString(c.Op.String())
	b.WriteByte(' ')
	if c.Op == OpIn {
		b.WriteByte('(')
		for i, l := range c.Set {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(l.Raw)
		}
		b.WriteByte(')')
	} else {
		b.WriteString(c.Value.Raw)
	}
	return b.String()
}

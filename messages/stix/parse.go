package stix

import (
	"fmt"
	"strconv"
	"sync"
)

// MaxPatternDepth bounds the nesting of parentheses and brackets. The
// parser recurses once per level, so without a bound a pattern of a million
// '(' would exhaust the stack; real patterns nest a handful of levels.
const MaxPatternDepth = 256

type parser struct {
	lx    lexer
	tok   token
	depth int
	err   *PatternError

	// Nodes of the first observation and comparison, carved out of one
	// allocation together with the Pattern (see pointNodes); nil once
	// taken.
	spareObs   *Observation
	spareCmp   *Comparison
	spareSteps []PathStep

	// check is set by checkPattern: the parser then only decides whether
	// the pattern is valid and returns no nodes, only nil. The steps of
	// each object path, which checkHash looks at, go to spareSteps, again
	// and again.
	check bool
}

// pointNodes is the whole tree of the pattern the bus sees most, one
// comparison in one observation ("[ipv4-addr:value = '198.51.100.23']"), so
// that parsing it costs a single allocation instead of four. Larger patterns
// take their first observation and comparison from here and allocate the
// rest one by one. All of it belongs to one tree and lives as long as it.
type pointNodes struct {
	pattern Pattern
	obs     Observation
	cmp     Comparison
	steps   [2]PathStep
}

func (p *parser) newObservation() *Observation {
	if o := p.spareObs; o != nil {
		p.spareObs = nil
		return o
	}
	return new(Observation)
}

func (p *parser) newComparison() *Comparison {
	if c := p.spareCmp; c != nil {
		p.spareCmp = nil
		return c
	}
	return new(Comparison)
}

// newSteps returns an empty step list with room for the usual one or two
// steps (value, hashes.'SHA-256').
func (p *parser) newSteps() []PathStep {
	if p.check {
		return p.spareSteps[:0]
	}
	if s := p.spareSteps; s != nil {
		p.spareSteps = nil
		return s
	}
	return make([]PathStep, 0, 2)
}

// Parse parses a STIX 2.1 pattern. It accepts exactly the OASIS grammar
// (STIXPattern.g4) plus the checks of the OASIS validator: no qualifier kind
// twice on one bracketed observation, and well-formed values for known hash
// algorithms. Timestamps must also exist on the calendar (no February 30),
// which the grammar alone does not check. Errors are *PatternError.
func Parse(s string) (*Pattern, error) {
	nodes := new(pointNodes)
	p := &parser{lx: lexer{src: s}, spareObs: &nodes.obs, spareCmp: &nodes.cmp, spareSteps: nodes.steps[:0]}
	root := p.pattern()
	if p.err != nil {
		return nil, p.err
	}
	nodes.pattern.Root = root
	return &nodes.pattern, nil
}

// checkPattern returns the error Parse(s) would return, without building
// the tree: for a decoder that only needs the verdict (Validate). It costs
// no allocation unless the pattern is invalid, has an IN set or an object
// path of more than four steps, or escapes in a string literal. Nothing of s
// is kept after the call, so s may alias a buffer that changes afterwards.
func checkPattern(s string) error {
	steps := checkSteps.Get().(*[4]PathStep)
	p := &parser{lx: lexer{src: s}, check: true, spareSteps: steps[:0]}
	p.pattern()
	*steps = [4]PathStep{} // drop the references into s
	checkSteps.Put(steps)
	if p.err != nil {
		return p.err
	}
	return nil
}

// checkSteps holds the scratch object path steps of checkPattern; a path
// with more steps than that allocates.
var checkSteps = sync.Pool{New: func() any { return new([4]PathStep) }}

// pattern parses the whole pattern.
func (p *parser) pattern() ObservationExpr {
	p.advance()
	root := p.observationExpressions()
	if p.err == nil && p.tok.kind != tEOF {
		p.errorf(p.tok.pos, "unexpected %s after the end of the pattern", p.describe(p.tok))
	}
	return root
}

func (p *parser) advance() {
	p.tok = p.lx.next()
	if p.lx.err != nil && p.err == nil {
		p.err = p.lx.err
	}
}

func (p *parser) errorf(off int, format string, args ...any) {
	if p.err == nil {
		p.err = newPatternError(p.lx.src, off, fmt.Sprintf(format, args...))
	}
	// Park on EOF so that every loop in the parser terminates.
	p.tok = token{kind: tEOF, pos: len(p.lx.src), end: len(p.lx.src)}
	p.lx.pos = len(p.lx.src)
}

func (p *parser) describe(t token) string {
	if t.kind == tEOF {
		return "end of pattern"
	}
	return fmt.Sprintf("%q", p.lx.text(t))
}

func (p *parser) expect(k tokKind, what string) bool {
	if p.err != nil {
		return false
	}
	if p.tok.kind != k {
		p.errorf(p.tok.pos, "expected %s, found %s", what, p.describe(p.tok))
		return false
	}
	p.advance()
	return p.err == nil
}

func (p *parser) enter() bool {
	p.depth++
	if p.depth > MaxPatternDepth {
		p.errorf(p.tok.pos, "nesting deeper than %d levels", MaxPatternDepth)
		return false
	}
	return true
}

func (p *parser) leave() { p.depth-- }

// observationExpressions: FOLLOWEDBY chain of OR chains of AND chains.
func (p *parser) observationExpressions() ObservationExpr {
	return p.obsChain(ObsFollowedBy)
}

func obsTok(op ObservationOperator) tokKind {
	switch op {
	case ObsFollowedBy:
		return tFOLLOWEDBY
	case ObsOr:
		return tOR
	}
	return tAND
}

func (p *parser) obsChain(op ObservationOperator) ObservationExpr {
	first := p.obsOperand(op)
	if p.err != nil || p.tok.kind != obsTok(op) {
		return first
	}
	if p.check {
		for p.err == nil && p.tok.kind == obsTok(op) {
			p.advance()
			p.obsOperand(op)
		}
		return nil
	}
	// Room for two operands: most chains are "A op B".
	chain := &ObservationOp{Op: op, Operands: append(make([]ObservationExpr, 0, 2), first)}
	for p.err == nil && p.tok.kind == obsTok(op) {
		p.advance()
		chain.Operands = append(chain.Operands, p.obsOperand(op))
	}
	return chain
}

// obsOperand parses one operand of an op chain: the next tighter chain.
func (p *parser) obsOperand(op ObservationOperator) ObservationExpr {
	if op == ObsAnd {
		return p.qualifiedObservation()
	}
	return p.obsChain(op + 1)
}

// qualifiedObservation: ( '[' comparison ']' | '(' observations ')' ) qualifier*
func (p *parser) qualifiedObservation() ObservationExpr {
	if p.err != nil {
		return nil
	}
	var quals *[]Qualifier // nil in check mode
	var node ObservationExpr
	bracketed := false
	switch p.tok.kind {
	case tLBrack:
		if !p.enter() {
			return nil
		}
		p.advance()
		expr := p.comparisonExpression()
		p.expect(tRBrack, "']' to close the observation")
		p.leave()
		if !p.check {
			o := p.newObservation()
			o.Expr = expr
			node, quals = o, &o.Qualifiers
		}
		bracketed = true
	case tLParen:
		if !p.enter() {
			return nil
		}
		p.advance()
		expr := p.observationExpressions()
		p.expect(tRParen, "')'")
		p.leave()
		if !p.check {
			g := &ObservationGroup{Expr: expr}
			node, quals = g, &g.Qualifiers
		}
	default:
		p.errorf(p.tok.pos, "expected '[' or '(' to start an observation expression, found %s", p.describe(p.tok))
		return nil
	}
	var kinds uint8 // the qualifier kinds seen, one bit each
	for p.err == nil {
		qpos := p.tok.pos
		var q Qualifier
		switch p.tok.kind {
		case tWITHIN:
			p.advance()
			if p.tok.kind != tIntPos && p.tok.kind != tFloatPos {
				p.errorf(p.tok.pos, "expected a positive number of seconds after WITHIN, found %s", p.describe(p.tok))
				return nil
			}
			q = Qualifier{Kind: QualifierWithin, Value: p.literal()}
			p.expect(tSECONDS, "SECONDS")
		case tREPEATS:
			p.advance()
			if p.tok.kind != tIntPos {
				p.errorf(p.tok.pos, "expected a positive integer after REPEATS, found %s", p.describe(p.tok))
				return nil
			}
			if _, err := strconv.ParseInt(p.lx.text(p.tok), 10, 64); err != nil {
				p.errorf(p.tok.pos, "REPEATS count %s out of range", p.lx.text(p.tok))
				return nil
			}
			q = Qualifier{Kind: QualifierRepeats, Value: p.literal()}
			p.expect(tTIMES, "TIMES")
		case tSTART:
			p.advance()
			if p.tok.kind != tTimestamp {
				p.errorf(p.tok.pos, "expected a t'…' timestamp after START, found %s", p.describe(p.tok))
				return nil
			}
			q = Qualifier{Kind: QualifierStartStop, Start: p.literal()}
			p.expect(tSTOP, "STOP")
			if p.err == nil && p.tok.kind != tTimestamp {
				p.errorf(p.tok.pos, "expected a t'…' timestamp after STOP, found %s", p.describe(p.tok))
				return nil
			}
			q.Stop = p.literal()
		default:
			return node
		}
		if p.err != nil {
			return nil
		}
		if bracketed && kinds&(1<<q.Kind) != 0 {
			p.errorf(qpos, "duplicate %s qualifier on one observation; group it in parentheses to qualify the result again", qualifierName(q.Kind))
			return nil
		}
		kinds |= 1 << q.Kind
		if quals != nil {
			*quals = append(*quals, q)
		}
	}
	return node
}

func qualifierName(k QualifierKind) string {
	return [...]string{"WITHIN", "REPEATS", "START/STOP"}[k]
}

// literal consumes the current literal token.
func (p *parser) literal() Literal {
	t := p.tok
	var kind LiteralKind
	switch t.kind {
	case tString:
		kind = LitString
	case tIntPos, tIntNeg:
		kind = LitInt
	case tFloatPos, tFloatNeg:
		kind = LitFloat
	case tBool:
		kind = LitBool
	case tBinary:
		kind = LitBinary
	case tHex:
		kind = LitHex
	case tTimestamp:
		kind = LitTimestamp
	default:
		p.errorf(t.pos, "expected a literal, found %s", p.describe(t))
		return Literal{}
	}
	p.advance()
	return Literal{Kind: kind, Raw: p.lx.text(t), Value: p.lx.val(t)}
}

func (p *parser) comparisonExpression() ComparisonExpr { return p.cmpChain(BoolOr) }

func (p *parser) cmpChain(op BoolOperator) ComparisonExpr {
	want := tOR
	if op == BoolAnd {
		want = tAND
	}
	first := p.cmpOperand(op)
	if p.err != nil || p.tok.kind != want {
		return first
	}
	if p.check {
		for p.err == nil && p.tok.kind == want {
			p.advance()
			p.cmpOperand(op)
		}
		return nil
	}
	chain := &ComparisonOp{Op: op, Operands: append(make([]ComparisonExpr, 0, 2), first)}
	for p.err == nil && p.tok.kind == want {
		p.advance()
		chain.Operands = append(chain.Operands, p.cmpOperand(op))
	}
	return chain
}

// cmpOperand parses one operand of a comparison chain: OR chains hold AND
// chains, AND chains hold property tests.
func (p *parser) cmpOperand(op BoolOperator) ComparisonExpr {
	if op == BoolAnd {
		return p.propTest()
	}
	return p.cmpChain(BoolAnd)
}

func (p *parser) propTest() ComparisonExpr {
	if p.err != nil {
		return nil
	}
	switch p.tok.kind {
	case tLParen:
		if !p.enter() {
			return nil
		}
		p.advance()
		expr := p.comparisonExpression()
		p.expect(tRParen, "')'")
		p.leave()
		if p.check {
			return nil
		}
		return &ComparisonGroup{Expr: expr}
	case tEXISTS:
		p.advance()
		return p.comparison(Comparison{Op: OpExists, Path: p.objectPath()})
	}
	// The comparison is put together here and only then copied into a
	// node, so that check mode needs no node at all.
	var c Comparison
	c.Path = p.objectPath()
	if p.err != nil {
		return nil
	}
	if p.tok.kind == tNOT {
		c.Negated = true
		p.advance()
	}
	opTok := p.tok
	switch opTok.kind {
	case tEQ, tNEQ:
		c.Op = operatorFor(opTok.kind)
		p.advance()
		c.Value = p.primitive(false)
	case tLT, tLE, tGT, tGE:
		c.Op = operatorFor(opTok.kind)
		p.advance()
		c.Value = p.primitive(true)
	case tIN:
		c.Op = OpIn
		p.advance()
		c.Set = p.setLiteral()
	case tLIKE, tMATCHES, tISSUBSET, tISSUPERSET:
		c.Op = operatorFor(opTok.kind)
		p.advance()
		if p.err == nil && p.tok.kind != tString {
			p.errorf(p.tok.pos, "%s needs a string literal, found %s", p.lx.text(opTok), p.describe(p.tok))
			return nil
		}
		c.Value = p.literal()
	default:
		p.errorf(opTok.pos, "expected a comparison operator, found %s", p.describe(opTok))
		return nil
	}
	if p.err != nil {
		return nil
	}
	p.checkHash(&c, opTok.pos)
	return p.comparison(c)
}

// comparison returns a node for c, or nil in check mode.
func (p *parser) comparison(c Comparison) ComparisonExpr {
	if p.check {
		return nil
	}
	n := p.newComparison()
	*n = c
	return n
}

func (p *parser) primitive(orderable bool) Literal {
	if p.err != nil {
		return Literal{}
	}
	if orderable && p.tok.kind == tBool {
		p.errorf(p.tok.pos, "true/false cannot be ordered")
		return Literal{}
	}
	return p.literal()
}

func (p *parser) setLiteral() []Literal {
	if !p.expect(tLParen, "'(' to start the IN set") {
		return nil
	}
	set := []Literal{}
	if p.tok.kind == tRParen {
		p.advance()
		return set
	}
	for p.err == nil {
		set = append(set, p.literal())
		if p.err != nil || p.tok.kind != tComma {
			break
		}
		p.advance()
	}
	p.expect(tRParen, "',' or ')' in the IN set")
	return set
}

func (p *parser) checkHash(c *Comparison, pos int) {
	if c.Op != OpEqual && c.Op != OpNotEqual && c.Op != OpIn {
		return
	}
	h, ok := c.Path.hashAlgoOf()
	if !ok {
		return
	}
	vals := c.Set
	if c.Op != OpIn {
		vals = []Literal{c.Value}
	}
	for _, v := range vals {
		if v.Kind != LitString {
			continue
		}
		if err := h.check(v.Value); err != nil {
			p.errorf(pos, "%v", err)
			return
		}
	}
}

// objectPath: type ':' first ( '.' key | '[' index ']' )*
func (p *parser) objectPath() ObjectPath {
	var op ObjectPath
	if p.err != nil {
		return op
	}
	switch p.tok.kind {
	case tIdent, tIdentHyphen:
		op.Type = p.lx.text(p.tok)
		p.advance()
	default:
		p.errorf(p.tok.pos, "expected an object type, found %s", p.describe(p.tok))
		return op
	}
	if !p.expect(tColon, "':' after the object type") {
		return op
	}
	op.Steps = p.newSteps()
	switch p.tok.kind {
	case tIdent, tString:
		op.Steps = append(op.Steps, PathStep{Kind: StepKey, Key: p.lx.val(p.tok)})
		p.advance()
	default:
		p.errorf(p.tok.pos, "expected a property name (letters, digits, _; quote anything else), found %s", p.describe(p.tok))
		return op
	}
	for p.err == nil {
		switch p.tok.kind {
		case tDot:
			p.advance()
			if p.tok.kind != tIdent && p.tok.kind != tString {
				p.errorf(p.tok.pos, "expected a property name after '.', found %s", p.describe(p.tok))
				return op
			}
			op.Steps = append(op.Steps, PathStep{Kind: StepKey, Key: p.lx.val(p.tok)})
			p.advance()
		case tLBrack:
			p.advance()
			switch p.tok.kind {
			case tAsterisk:
				op.Steps = append(op.Steps, PathStep{Kind: StepAnyIndex})
			case tIntPos, tIntNeg:
				n, err := strconv.ParseInt(p.lx.text(p.tok), 10, 64)
				if err != nil {
					p.errorf(p.tok.pos, "list index %s out of range", p.lx.text(p.tok))
					return op
				}
				op.Steps = append(op.Steps, PathStep{Kind: StepIndex, Index: n})
			default:
				p.errorf(p.tok.pos, "expected an index or '*' in a list step, found %s", p.describe(p.tok))
				return op
			}
			p.advance()
			p.expect(tRBrack, "']' to close the list step")
		default:
			return op
		}
	}
	return op
}

func operatorFor(k tokKind) Operator {
	switch k {
	case tNEQ:
		return OpNotEqual
	case tLT:
		return OpLess
	case tLE:
		return OpLessEqual
	case tGT:
		return OpGreater
	case tGE:
		return OpGreaterEqual
	case tLIKE:
		return OpLike
	case tMATCHES:
		return OpMatches
	case tISSUBSET:
		return OpIsSubset
	case tISSUPERSET:
		return OpIsSuperset
	}
	return OpEqual
}

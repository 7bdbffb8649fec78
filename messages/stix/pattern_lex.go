package stix

import (
	"strings"
	"unicode/utf8"
)

// The lexer follows the token rules of the OASIS STIXPattern.g4 (2.1),
// including longest match: "ipv4-addr" is one identifier, "1.5" one float,
// "h'ff'" one hex literal, "ANDROID" an identifier and "AND" a keyword.

type tokKind uint8

const (
	tEOF         tokKind = iota
	tIdent               // IdentifierWithoutHyphen
	tIdentHyphen         // IdentifierWithHyphen (only valid as an object type)
	tString
	tIntPos
	tIntNeg
	tFloatPos
	tFloatNeg
	tBool
	tBinary
	tHex
	tTimestamp

	tAND
	tOR
	tNOT
	tFOLLOWEDBY
	tLIKE
	tMATCHES
	tISSUPERSET
	tISSUBSET
	tEXISTS
	tLAST
	tIN
	tSTART
	tSTOP
	tSECONDS
	tWITHIN
	tREPEATS
	tTIMES

	tEQ
	tNEQ
	tLT
	tLE
	tGT
	tGE
	tColon
	tDot
	tComma
	tLParen
	tRParen
	tLBrack
	tRBrack
	tPlus
	tMinus
	tPower
	tDivide
	tAsterisk
)

var keywords = map[string]tokKind{
	"AND": tAND, "OR": tOR, "NOT": tNOT, "FOLLOWEDBY": tFOLLOWEDBY,
	"LIKE": tLIKE, "MATCHES": tMATCHES, "ISSUPERSET": tISSUPERSET, "ISSUBSET": tISSUBSET,
	"EXISTS": tEXISTS, "LAST": tLAST, "IN": tIN, "START": tSTART, "STOP": tSTOP,
	"SECONDS": tSECONDS, "WITHIN": tWITHIN, "REPEATS": tREPEATS, "TIMES": tTIMES,
	"true": tBool, "false": tBool,
}

type token struct {
	kind tokKind
	pos  int    // byte offset of the first character
	text string // source text of the token
	val  string // decoded value: string contents, literal payload
}

type lexer struct {
	src string
	pos int
	err *PatternError
}

func (lx *lexer) fail(off int, msg string) token {
	if lx.err == nil {
		lx.err = newPatternError(lx.src, off, msg)
	}
	lx.pos = len(lx.src)
	return token{kind: tEOF, pos: off}
}

func newPatternError(src string, off int, msg string) *PatternError {
	if off > len(src) {
		off = len(src)
	}
	return &PatternError{Column: utf8.RuneCountInString(src[:off]) + 1, Offset: off, Msg: msg}
}

// isSpace is the grammar's WS set, which includes Unicode spaces.
func isSpace(r rune) bool {
	switch r {
	case ' ', '\t', '\r', '\n', '\v', '\f', 0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return 0x2000 <= r && r <= 0x200a
}

func isIdentStart(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' }
func isIdentChar(c byte) bool  { return isIdentStart(c) || '0' <= c && c <= '9' }
func isDigit(c byte) bool      { return '0' <= c && c <= '9' }

// skip consumes whitespace and comments (both are skipped by the grammar).
func (lx *lexer) skip() bool {
	s := lx.src
	for lx.pos < len(s) {
		c := s[lx.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
			lx.pos++
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRuneInString(s[lx.pos:])
			if !isSpace(r) {
				return true
			}
			lx.pos += n
		case c == '/' && lx.pos+1 < len(s) && s[lx.pos+1] == '*':
			end := strings.Index(s[lx.pos+2:], "*/")
			if end < 0 {
				lx.fail(lx.pos, "unterminated /* comment")
				return false
			}
			lx.pos += 2 + end + 2
		case c == '/' && lx.pos+1 < len(s) && s[lx.pos+1] == '/':
			for lx.pos < len(s) && s[lx.pos] != '\n' && s[lx.pos] != '\r' {
				lx.pos++
			}
		default:
			return true
		}
	}
	return true
}

func (lx *lexer) next() token {
	if lx.err != nil || !lx.skip() {
		return token{kind: tEOF, pos: len(lx.src)}
	}
	s := lx.src
	start := lx.pos
	if start >= len(s) {
		return token{kind: tEOF, pos: start}
	}
	tok := func(k tokKind, n int) token {
		lx.pos = start + n
		return token{kind: k, pos: start, text: s[start : start+n]}
	}
	c := s[start]
	switch {
	case (c == 't' || c == 'b' || c == 'h') && start+1 < len(s) && s[start+1] == '\'':
		return lx.prefixedLiteral(c)
	case isIdentStart(c):
		i := start + 1
		for i < len(s) && isIdentChar(s[i]) {
			i++
		}
		kind := tIdent
		for i < len(s) && (isIdentChar(s[i]) || s[i] == '-') {
			kind = tIdentHyphen
			i++
		}
		t := tok(kind, i-start)
		if kind == tIdent {
			if k, ok := keywords[t.text]; ok {
				t.kind = k
			}
		}
		t.val = t.text
		return t
	case c == '\'':
		return lx.stringLiteral()
	case isDigit(c) || c == '.' || c == '+' || c == '-':
		return lx.number()
	}
	two := ""
	if start+1 < len(s) {
		two = s[start : start+2]
	}
	switch two {
	case "==":
		return tok(tEQ, 2)
	case "!=", "<>":
		return tok(tNEQ, 2)
	case "<=":
		return tok(tLE, 2)
	case ">=":
		return tok(tGE, 2)
	}
	switch c {
	case '=':
		return tok(tEQ, 1)
	case '<':
		return tok(tLT, 1)
	case '>':
		return tok(tGT, 1)
	case ':':
		return tok(tColon, 1)
	case ',':
		return tok(tComma, 1)
	case '(':
		return tok(tLParen, 1)
	case ')':
		return tok(tRParen, 1)
	case '[':
		return tok(tLBrack, 1)
	case ']':
		return tok(tRBrack, 1)
	case '^':
		return tok(tPower, 1)
	case '/':
		return tok(tDivide, 1)
	case '*':
		return tok(tAsterisk, 1)
	}
	r, _ := utf8.DecodeRuneInString(s[start:])
	return lx.fail(start, "invalid character "+quoteRune(r))
}

func quoteRune(r rune) string {
	if r == utf8.RuneError {
		return "(invalid UTF-8)"
	}
	return "'" + string(r) + "'"
}

// number lexes IntPos/IntNeg/FloatPos/FloatNeg, or the lone '.', '+', '-'.
func (lx *lexer) number() token {
	s := lx.src
	start := lx.pos
	i := start
	neg := false
	if s[i] == '+' || s[i] == '-' {
		neg = s[i] == '-'
		i++
	}
	intStart := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	intEnd := i
	if i+1 < len(s) && s[i] == '.' && isDigit(s[i+1]) {
		i += 2
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		kind := tFloatPos
		if neg {
			kind = tFloatNeg
		}
		lx.pos = i
		return token{kind: kind, pos: start, text: s[start:i], val: s[start:i]}
	}
	if intEnd == intStart {
		lx.pos = start + 1
		switch s[start] {
		case '+':
			return token{kind: tPlus, pos: start, text: "+"}
		case '-':
			return token{kind: tMinus, pos: start, text: "-"}
		}
		return token{kind: tDot, pos: start, text: "."}
	}
	// '0' | [1-9][0-9]*: a leading zero ends the literal, as in the
	// grammar, so "007" is three tokens and a syntax error later.
	if s[intStart] == '0' {
		intEnd = intStart + 1
	}
	kind := tIntPos
	if neg {
		kind = tIntNeg
	}
	lx.pos = intEnd
	return token{kind: kind, pos: start, text: s[start:intEnd], val: s[start:intEnd]}
}

func (lx *lexer) stringLiteral() token {
	s := lx.src
	start := lx.pos
	i := start + 1
	escaped := false
	for {
		j := strings.IndexAny(s[i:], `'\`)
		if j < 0 {
			return lx.fail(start, "unterminated string literal")
		}
		i += j
		if s[i] == '\'' {
			break
		}
		if i+1 >= len(s) || (s[i+1] != '\'' && s[i+1] != '\\') {
			return lx.fail(i, `invalid escape in string literal: only \' and \\ are allowed`)
		}
		escaped = true
		i += 2
	}
	lx.pos = i + 1
	t := token{kind: tString, pos: start, text: s[start : i+1], val: s[start+1 : i]}
	if escaped {
		t.val = unescapePattern(t.val)
	}
	return t
}

func unescapePattern(v string) string {
	var b strings.Builder
	b.Grow(len(v))
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// prefixedLiteral lexes t'…', b'…' and h'…'. Where the grammar's lexer would
// fall back to an identifier followed by a string, no parse can succeed, so
// we report the malformed literal directly.
func (lx *lexer) prefixedLiteral(prefix byte) token {
	s := lx.src
	start := lx.pos
	end := strings.IndexByte(s[start+2:], '\'')
	if end < 0 {
		return lx.fail(start, "unterminated "+string(prefix)+"'…' literal")
	}
	body := s[start+2 : start+2+end]
	t := token{pos: start, text: s[start : start+2+end+1], val: body}
	switch prefix {
	case 't':
		if _, err := parseTimestamp(body, true); err != nil {
			return lx.fail(start, "invalid timestamp literal: "+err.Error())
		}
		t.kind = tTimestamp
	case 'b':
		if !validBase64(body) {
			return lx.fail(start, "invalid binary literal: not padded base64")
		}
		t.kind = tBinary
	case 'h':
		if len(body)%2 != 0 {
			return lx.fail(start, "invalid hex literal: odd number of digits")
		}
		for i := 0; i < len(body); i++ {
			if !isHex(body[i]) {
				return lx.fail(start+2+i, "invalid hex literal: not a hex digit")
			}
		}
		t.kind = tHex
	}
	lx.pos = start + len(t.text)
	return t
}

func isBase64Char(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/'
}

// validBase64 is the grammar's BinaryLiteral body: one or more groups of
// four, the last of which may end in "=" or "==".
func validBase64(s string) bool {
	if len(s) == 0 || len(s)%4 != 0 {
		return false
	}
	pad := 0
	if s[len(s)-1] == '=' {
		pad++
		if s[len(s)-2] == '=' {
			pad++
		}
	}
	for i := 0; i < len(s)-pad; i++ {
		if !isBase64Char(s[i]) {
			return false
		}
	}
	return true
}

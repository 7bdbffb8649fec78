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

// keyword returns the token kind of a reserved word. A switch rather than a
// map: every identifier in a pattern is looked up, and comparing against a
// handful of constants is several times cheaper than hashing.
func keyword(s string) (tokKind, bool) {
	switch s {
	case "AND":
		return tAND, true
	case "OR":
		return tOR, true
	case "NOT":
		return tNOT, true
	case "FOLLOWEDBY":
		return tFOLLOWEDBY, true
	case "LIKE":
		return tLIKE, true
	case "MATCHES":
		return tMATCHES, true
	case "ISSUPERSET":
		return tISSUPERSET, true
	case "ISSUBSET":
		return tISSUBSET, true
	case "EXISTS":
		return tEXISTS, true
	case "LAST":
		return tLAST, true
	case "IN":
		return tIN, true
	case "START":
		return tSTART, true
	case "STOP":
		return tSTOP, true
	case "SECONDS":
		return tSECONDS, true
	case "WITHIN":
		return tWITHIN, true
	case "REPEATS":
		return tREPEATS, true
	case "TIMES":
		return tTIMES, true
	case "true", "false":
		return tBool, true
	}
	return tEOF, false
}

// token is a kind and a span of the source. It holds no strings, so that
// the parser's one-token lookahead is copied without write barriers; text
// and val cut the strings out of the source when the parser needs them.
type token struct {
	kind    tokKind
	escaped bool // a string literal with \' or \\ in it
	pos     int  // byte offset of the first character
	end     int  // byte offset after the last character
}

// text is the source text of t.
func (lx *lexer) text(t token) string { return lx.src[t.pos:t.end] }

// val is the decoded value of t: a string literal's contents, the payload
// of t'…', b'…' and h'…', and the text of anything else.
func (lx *lexer) val(t token) string {
	switch t.kind {
	case tString:
		v := lx.src[t.pos+1 : t.end-1]
		if t.escaped {
			v = unescapePattern(v)
		}
		return v
	case tTimestamp, tBinary, tHex:
		return lx.src[t.pos+2 : t.end-1]
	}
	return lx.text(t)
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
	return token{kind: tEOF, pos: off, end: off}
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
		return token{kind: tEOF, pos: len(lx.src), end: len(lx.src)}
	}
	s := lx.src
	start := lx.pos
	if start >= len(s) {
		return token{kind: tEOF, pos: start, end: start}
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
		lx.pos = i
		text := s[start:i]
		if kind == tIdent {
			if k, ok := keyword(text); ok {
				kind = k
			}
		}
		return token{kind: kind, pos: start, end: i}
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
		return lx.emit(tEQ, start, 2)
	case "!=", "<>":
		return lx.emit(tNEQ, start, 2)
	case "<=":
		return lx.emit(tLE, start, 2)
	case ">=":
		return lx.emit(tGE, start, 2)
	}
	switch c {
	case '=':
		return lx.emit(tEQ, start, 1)
	case '<':
		return lx.emit(tLT, start, 1)
	case '>':
		return lx.emit(tGT, start, 1)
	case ':':
		return lx.emit(tColon, start, 1)
	case ',':
		return lx.emit(tComma, start, 1)
	case '(':
		return lx.emit(tLParen, start, 1)
	case ')':
		return lx.emit(tRParen, start, 1)
	case '[':
		return lx.emit(tLBrack, start, 1)
	case ']':
		return lx.emit(tRBrack, start, 1)
	case '^':
		return lx.emit(tPower, start, 1)
	case '/':
		return lx.emit(tDivide, start, 1)
	case '*':
		return lx.emit(tAsterisk, start, 1)
	}
	r, _ := utf8.DecodeRuneInString(s[start:])
	return lx.fail(start, "invalid character "+quoteRune(r))
}

// emit returns the n-byte punctuation token at start and moves past it.
func (lx *lexer) emit(k tokKind, start, n int) token {
	lx.pos = start + n
	return token{kind: k, pos: start, end: start + n}
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
		return token{kind: kind, pos: start, end: i}
	}
	if intEnd == intStart {
		lx.pos = start + 1
		switch s[start] {
		case '+':
			return token{kind: tPlus, pos: start, end: start + 1}
		case '-':
			return token{kind: tMinus, pos: start, end: start + 1}
		}
		return token{kind: tDot, pos: start, end: start + 1}
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
	return token{kind: kind, pos: start, end: intEnd}
}

func (lx *lexer) stringLiteral() token {
	s := lx.src
	start := lx.pos
	i := start + 1
	escaped := false
	// Find the next quote, then look for a backslash before it: both
	// searches are vectorised, and most literals have no escapes. end is
	// only searched again once an escaped quote moved us past it, so that
	// input full of escapes stays linear.
	end := -1
	for {
		if end < i {
			end = len(s)
			if q := strings.IndexByte(s[i:], '\''); q >= 0 {
				end = i + q
			}
		}
		bs := strings.IndexByte(s[i:end], '\\')
		if bs < 0 {
			if end == len(s) {
				return lx.fail(start, "unterminated string literal")
			}
			i = end
			break
		}
		i += bs
		if i+1 >= len(s) || (s[i+1] != '\'' && s[i+1] != '\\') {
			return lx.fail(i, `invalid escape in string literal: only \' and \\ are allowed`)
		}
		escaped = true
		i += 2
	}
	lx.pos = i + 1
	return token{kind: tString, escaped: escaped, pos: start, end: i + 1}
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
	t := token{pos: start, end: start + 2 + end + 1}
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
	lx.pos = t.end
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

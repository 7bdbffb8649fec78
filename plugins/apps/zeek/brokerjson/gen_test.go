package brokerjson_test

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	bj "github.com/threatbus/threatbus/plugins/apps/zeek/brokerjson"
)

// testdata is shared/testdata/zeek-websocket, seen from this package.
const testdata = "../../../../../shared/testdata/zeek-websocket"

// gen makes random values of every type for the property tests.
type gen struct {
	r *rand.Rand
	// schemaSafe restricts values to what the published schema accepts as
	// Broker writes it: no negative timespans, no -0 (a set with 0 and -0
	// breaks the schema's uniqueItems) and sets without duplicates.
	schemaSafe bool
}

func newGen(seed uint64, schemaSafe bool) *gen {
	return &gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), schemaSafe: schemaSafe}
}

var runePalette = []rune{
	'a', 'z', 'A', '0', ' ', '"', '\\', '/', '<', '>', '&', '\'',
	0x00, 0x01, '\b', '\t', '\n', '\v', '\f', '\r', 0x1b, 0x1f, 0x7f,
	'é', 'ß', '€', 'ー', '\u2028', '\u2029', '\uFFFD', '\uFEFF', '😀', '𝄞',
}

func (g *gen) str() string {
	n := g.r.IntN(12)
	var b strings.Builder
	for range n {
		if g.r.IntN(3) == 0 {
			b.WriteRune(runePalette[g.r.IntN(len(runePalette))])
		} else {
			b.WriteByte(byte(0x20 + g.r.IntN(0x5f)))
		}
	}
	return b.String()
}

func (g *gen) addr() netip.Addr {
	switch g.r.IntN(3) {
	case 0:
		var a [4]byte
		for i := range a {
			a[i] = byte(g.r.IntN(256))
		}
		return netip.AddrFrom4(a)
	case 1:
		var a [16]byte
		for i := range a {
			if g.r.IntN(3) > 0 { // runs of zeros exercise "::"
				a[i] = byte(g.r.IntN(256))
			}
		}
		return netip.AddrFrom16(a)
	}
	var a [4]byte
	for i := range a {
		a[i] = byte(g.r.IntN(256))
	}
	return netip.AddrFrom16(netip.AddrFrom4(a).As16()) // v4-mapped v6
}

func (g *gen) real() float64 {
	specials := []float64{0, 1, -7.5, 0.1, 1e21, 1e-7, 5e-324, math.MaxFloat64, -math.MaxFloat64, 123456789, 2}
	if !g.schemaSafe {
		specials = append(specials, math.Copysign(0, -1))
	}
	if g.r.IntN(3) == 0 {
		return specials[g.r.IntN(len(specials))]
	}
	for {
		f := math.Float64frombits(g.r.Uint64())
		if !math.IsNaN(f) && !math.IsInf(f, 0) && !(g.schemaSafe && f == 0) {
			return f
		}
	}
}

// Millisecond instants from 0000-01-01 to 9999-12-31: what a timestamp
// carries.
var (
	minMilli = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	maxMilli = time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC).UnixMilli()
)

func (g *gen) scalar() bj.Value {
	switch g.r.IntN(12) {
	case 0:
		return bj.None{}
	case 1:
		return bj.Boolean(g.r.IntN(2) == 1)
	case 2:
		if g.r.IntN(4) == 0 {
			return bj.Count([]uint64{0, math.MaxUint64, 1 << 53, 1<<53 + 1}[g.r.IntN(4)])
		}
		return bj.Count(g.r.Uint64())
	case 3:
		if g.r.IntN(4) == 0 {
			return bj.Integer([]int64{math.MinInt64, math.MaxInt64, -1 << 53, 1<<53 + 1}[g.r.IntN(4)])
		}
		return bj.Integer(int64(g.r.Uint64()))
	case 4:
		return bj.Real(g.real())
	case 5:
		d := int64(g.r.Uint64())
		switch g.r.IntN(4) {
		case 0: // whole seconds, minutes, days
			d = int64(g.r.IntN(1e6)) * int64([]time.Duration{time.Second, time.Minute, 24 * time.Hour}[g.r.IntN(3)])
		case 1:
			d = int64(g.r.IntN(1e6)) * int64(time.Microsecond)
		}
		if g.schemaSafe && d < 0 {
			d = -(d + 1)
		}
		return bj.Timespan(d)
	case 6:
		ms := minMilli + g.r.Int64N(maxMilli-minMilli+1)
		return bj.NewTimestamp(time.UnixMilli(ms))
	case 7:
		return bj.String(g.str())
	case 8:
		return bj.EnumValue("Mod::" + g.str())
	case 9:
		return bj.NewAddress(g.addr())
	case 10:
		a := g.addr()
		return bj.NewSubnet(netip.PrefixFrom(a, g.r.IntN(a.BitLen()+1)))
	}
	return bj.Port{Number: uint16(g.r.IntN(65536)), Protocol: bj.Protocol(g.r.IntN(4))}
}

func (g *gen) value(depth int) bj.Value {
	if depth >= 4 || g.r.IntN(3) > 0 {
		return g.scalar()
	}
	n := g.r.IntN(5)
	switch g.r.IntN(3) {
	case 0:
		v := make(bj.Vector, n)
		for i := range v {
			v[i] = g.value(depth + 1)
		}
		return v
	case 1:
		var s bj.Set
		seen := map[string]bool{}
		for range n {
			x := g.value(depth + 1)
			key, err := bj.AppendValue(nil, x)
			if err != nil {
				panic(err)
			}
			if g.schemaSafe && seen[string(key)] {
				continue
			}
			seen[string(key)] = true
			s = append(s, x)
		}
		if s == nil {
			s = bj.Set{}
		}
		return s
	}
	t := make(bj.Table, n)
	for i := range t {
		t[i] = bj.TableEntry{Key: g.value(depth + 1), Value: g.value(depth + 1)}
	}
	return t
}

func (g *gen) event() bj.Event {
	e := bj.Event{Name: "Mod::" + g.str()}
	for range g.r.IntN(4) {
		e.Args = append(e.Args, g.value(1))
	}
	if g.r.IntN(2) == 0 {
		e.HasMetadata = true
		for range g.r.IntN(3) {
			e.Metadata = append(e.Metadata, bj.MetadataEntry{ID: g.r.Uint64N(4), Value: g.scalar()})
		}
	}
	return e
}

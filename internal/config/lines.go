package config

import (
	"bufio"
	"bytes"
	"strings"
)

// keyLines maps each dotted key of a TOML document to the line that defines
// it. BurntSushi/toml reports lines for syntax and type errors but not for
// keys it never decoded, and an unknown key without a line is a poor error.
// The scan understands table headers and (dotted) keys, which is all a config
// file written by hand uses; keys it cannot place fall back to their table.
func keyLines(data []byte) map[string]int {
	lines := map[string]int{}
	table := ""
	inMulti := "" // the delimiter of a multi-line string being skipped
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if inMulti != "" {
			if strings.Contains(line, inMulti) {
				inMulti = ""
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			h := strings.Trim(line, "[] \t")
			if i := strings.Index(h, "#"); i >= 0 {
				h = strings.TrimRight(strings.TrimSpace(h[:i]), "]")
			}
			table = normalizeKey(h)
			if _, seen := lines[table]; !seen {
				lines[table] = n
			}
			continue
		}
		eq := strings.Index(line, "=")
		if eq <= 0 {
			continue
		}
		key := normalizeKey(line[:eq])
		if table != "" {
			key = table + "." + key
		}
		if _, seen := lines[key]; !seen {
			lines[key] = n
		}
		rest := line[eq+1:]
		for _, delim := range []string{`"""`, `'''`} {
			if strings.Count(rest, delim) == 1 {
				inMulti = delim
			}
		}
	}
	return lines
}

// normalizeKey turns `a . "b" .c` into a.b.c, the form toml.Key.String uses
// for bare keys.
func normalizeKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// lineOf returns the line of key, or of its closest enclosing table.
func lineOf(lines map[string]int, key string) int {
	for k := key; k != ""; {
		if n, ok := lines[k]; ok {
			return n
		}
		i := strings.LastIndex(k, ".")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

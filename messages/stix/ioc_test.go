package stix

import "testing"

func TestPointIoC(t *testing.T) {
	yes := []struct{ in, path, value string }{
		{"[ipv4-addr:value = '6.6.6.6']", "ipv4-addr:value", "6.6.6.6"},
		{"([ipv4-addr:value = '6.6.6.6'])", "ipv4-addr:value", "6.6.6.6"},
		{"(([(( domain-name:value == 'example.com' ))]))", "domain-name:value", "example.com"},
		{"[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']", "file:hashes.'SHA-256'", "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"},
		{"[FILE:hashes.md5 = 'cead3f77f6cda6ec00f57d76c9a6879f']", "file:hashes.MD5", "cead3f77f6cda6ec00f57d76c9a6879f"},
		{`[windows-registry-key:key = 'HKEY_LOCAL_MACHINE\\foo\\it\'s']`, "windows-registry-key:key", `HKEY_LOCAL_MACHINE\foo\it's`},
		{"[network-traffic:dst_port = 443]", "network-traffic:dst_port", "443"},
		{"[domain-name:resolves_to_refs[*].value = '1.2.3.4']", "domain-name:resolves_to_refs[*].value", "1.2.3.4"},
	}
	for _, tc := range yes {
		path, value, ok := PointIoC(mustParse(t, tc.in))
		if !ok || path.String() != tc.path || value != tc.value {
			t.Errorf("PointIoC(%q) = %q, %q, %v; want %q, %q", tc.in, path, value, ok, tc.path, tc.value)
		}
	}
	no := []string{
		"[ipv4-addr:value != '6.6.6.6']",
		"[ipv4-addr:value NOT = '6.6.6.6']",
		"[ipv4-addr:value = '6.6.6.6' OR ipv4-addr:value = '7.7.7.7']",
		"[ipv4-addr:value = '6.6.6.6' AND ipv4-addr:value = '7.7.7.7']",
		"[ipv4-addr:value = '6.6.6.6'] AND [ipv4-addr:value = '7.7.7.7']",
		"[ipv4-addr:value = '6.6.6.6'] OR [ipv4-addr:value = '7.7.7.7']",
		"[ipv4-addr:value = '6.6.6.6'] FOLLOWEDBY [ipv4-addr:value = '7.7.7.7']",
		"[ipv4-addr:value = '6.6.6.6'] WITHIN 5 SECONDS",
		"([ipv4-addr:value = '6.6.6.6']) REPEATS 2 TIMES",
		"[ipv4-addr:value IN ('6.6.6.6')]",
		"[ipv4-addr:value ISSUBSET '6.6.6.0/24']",
		"[ipv4-addr:value LIKE '6.6.6.%']",
		"[EXISTS ipv4-addr:value]",
		"[ipv4-addr:value > '6.6.6.6']",
	}
	for _, in := range no {
		if path, value, ok := PointIoC(mustParse(t, in)); ok {
			t.Errorf("PointIoC(%q) = %q, %q, true; want not a point IoC", in, path, value)
		}
	}
	if _, _, ok := PointIoC(nil); ok {
		t.Error("PointIoC(nil) is a point IoC")
	}
}

func TestCanonicalObjectPath(t *testing.T) {
	hash := "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"
	var paths []ObjectPath
	for _, key := range []string{"'SHA-256'", "'sha-256'", "SHA256", "sha256", "'Sha_256'"} {
		path, _, ok := PointIoC(mustParse(t, "[file:hashes."+key+" = '"+hash+"']"))
		if !ok {
			t.Fatalf("%s: not a point IoC", key)
		}
		if path.String() != "file:hashes.'SHA-256'" {
			t.Errorf("%s: canonical path %q", key, path)
		}
		paths = append(paths, path)
	}
	for _, p := range paths[1:] {
		if !p.Equal(paths[0]) {
			t.Errorf("%s != %s", p, paths[0])
		}
	}
	vocab := map[string]string{
		"md5": "MD5", "sha1": "SHA-1", "SHA-1": "SHA-1", "sha512": "SHA-512", "sha3-256": "SHA3-256",
		"SHA3512": "SHA3-512", "ssdeep": "SSDEEP", "tlsh": "TLSH", "custom-hash": "custom-hash",
	}
	for in, want := range vocab {
		p := ObjectPath{Type: "File", Steps: []PathStep{{Kind: StepKey, Key: "hashes"}, {Kind: StepKey, Key: in}}}.Canonical()
		if p.Type != "file" || p.Steps[1].Key != want {
			t.Errorf("canonical of hashes.%s = %s, want %s", in, p, want)
		}
	}
	// Only names after "hashes" are algorithms; other properties are
	// case-sensitive in STIX and must stay distinct.
	a := ObjectPath{Type: "x", Steps: []PathStep{{Kind: StepKey, Key: "md5"}}}
	b := ObjectPath{Type: "x", Steps: []PathStep{{Kind: StepKey, Key: "MD5"}}}
	if a.Equal(b) || a.Canonical().String() != "x:md5" {
		t.Errorf("non-hash key was normalised: %s %s", a.Canonical(), b.Canonical())
	}
	orig := ObjectPath{Type: "FILE", Steps: []PathStep{{Kind: StepKey, Key: "hashes"}, {Kind: StepKey, Key: "sha256"}}}
	_ = orig.Canonical()
	if orig.Steps[1].Key != "sha256" {
		t.Error("Canonical modified its receiver")
	}
}

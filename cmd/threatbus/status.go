package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/threatbus/threatbus/actors"
)

// statusCmd prints a running bus's /api/v1/status as tables.
func statusCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("admin", "127.0.0.1:13380", "admin server address (host:port)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + *addr + "/api/v1/status")
	if err != nil {
		fmt.Fprintf(stderr, "threatbus: status: %v (is the bus running with [admin] listen = %q?)\n", err, *addr)
		return exitFail
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		fmt.Fprintf(stderr, "threatbus: status: %s: %s\n", resp.Status, strings.TrimSpace(string(b)))
		return exitFail
	}
	var st actors.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		fmt.Fprintf(stderr, "threatbus: status: %v\n", err)
		return exitFail
	}
	printStatus(stdout, st)
	return exitOK
}

func printStatus(w io.Writer, st actors.Status) {
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY"
	}
	fmt.Fprintf(w, "threatbus %s, up %s, %s\n\n", st.Version, time.Since(st.Started).Round(time.Second), ready)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLUGIN\tKIND\tSTATE\tREADY\tRESTARTS\tNOTE")
	for _, p := range st.Plugins {
		note := p.NotReady
		if p.LastError != "" {
			note = strings.TrimSpace(note + " " + p.LastError)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%d\t%s\n", p.Name, strings.TrimSuffix(p.Kind, "s"), p.State, p.Ready, p.Restarts, note)
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBSCRIPTION\tAPP\tTOPICS\tQUEUED\tDELIVERED\tDROPPED")
	for _, s := range st.Subscriptions {
		name := s.Name
		if name == s.App {
			name = s.ID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", name, s.App, strings.Join(quoteAll(s.Topics), ","), s.Queued, s.Delivered, counts(s.Dropped))
	}
	if len(st.Subscriptions) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tTOPIC\tPUBLISHED\tDELIVERED")
	for _, t := range st.Traffic {
		if t.Published+t.Delivered > 0 {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", t.App, t.Topic, t.Published, t.Delivered)
		}
	}
	tw.Flush()

	fmt.Fprintf(w, "\ndropped: %s\nrejected: %s\ndeduplicated: %s\nsnapshots: %d requested, %d in flight\n",
		counts(st.Drops), counts(st.Rejected), counts(st.Deduplicated), st.SnapshotRequests, st.SnapshotsInFlight)
	if len(st.Restarts) > 0 {
		fmt.Fprintln(w, "\nsupervisor decisions:")
		for _, r := range st.Restarts {
			fmt.Fprintf(w, "  %s %s: %d\n", r.Actor, r.Directive, r.Count)
		}
	}
}

func counts(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

func quoteAll(topics []string) []string {
	out := make([]string, len(topics))
	for i, t := range topics {
		out[i] = fmt.Sprintf("%q", t)
	}
	return out
}

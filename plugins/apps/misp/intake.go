package misp

import (
	"context"
	"time"

	"github.com/threatbus/threatbus/plugins"
)

// intake maps one attribute message from ZeroMQ or Kafka and publishes the
// indicator. Nothing here logs per message above debug level.
func (a *App) intake(ctx context.Context, bus plugins.Bus, payload []byte) {
	st := a.st
	st.counts.received.Add(1)
	ind, err := st.proc.process(payload, time.Now())
	if err != nil {
		st.skipped(st.counts.skipped, "intake", err)
		return
	}
	if err := bus.Publish(ctx, ind.Raw); err != nil {
		st.skipped(st.counts.skipped, "intake", &skip{cause: causePublish, err: err})
		return
	}
	st.counts.publishedOne(ind.Update)
}

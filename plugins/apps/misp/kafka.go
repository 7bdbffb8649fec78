package misp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/threatbus/threatbus/plugins"
)

// kafkaPing is how often the brokers are asked whether they are there, for
// Ready: unlike ZeroMQ, Kafka carries no heartbeat from MISP.
const kafkaPing = 10 * time.Second

// runKafka consumes MISP's attribute messages from Kafka in a consumer
// group. Offsets are committed after the records were handed to the bus,
// so a restart re-reads what was not (at least once).
func (a *App) runKafka(ctx context.Context, bus plugins.Bus) error {
	st := a.st
	log := st.logger()
	opts, err := a.kafkaOptions(log)
	if err != nil {
		return &plugins.ConfigError{Err: fmt.Errorf("misp: kafka: %w", err)}
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return &plugins.ConfigError{Err: fmt.Errorf("misp: kafka: %w", err)}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		// Everything polled has been published: commit it before leaving
		// the group, or the next member would read it again.
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := cl.CommitUncommittedOffsets(cctx); err != nil {
			log.Warn("misp: kafka: commit offsets on stop", "error", err)
		}
		ccancel()
		cl.Close()
	}()
	st.live.started(time.Now())
	log.Info("misp: consuming MISP attributes from Kafka", "brokers", a.Kafka.Brokers, "topics", a.Kafka.Topics, "group", a.Kafka.Group)

	wg.Add(1)
	go func() {
		defer wg.Done()
		a.pingKafka(ctx, cl)
	}()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			problem := fmt.Sprintf("Kafka fetch from %s/%d failed: %v", topic, partition, err)
			if st.live.setProblem(problem, time.Now()) {
				log.Warn("misp: "+problem, "brokers", a.Kafka.Brokers)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			if st.live.heard(time.Now()) {
				log.Info("misp: MISP is heard from again", "brokers", a.Kafka.Brokers)
			}
			a.intake(ctx, bus, r.Value)
		})
	}
}

// pingKafka keeps the connection state for Ready.
func (a *App) pingKafka(ctx context.Context, cl *kgo.Client) {
	st := a.st
	log := st.logger()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, kafkaPing)
		err := cl.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		if err != nil {
			if st.live.setConnected(false, "", now) {
				log.Warn("misp: Kafka brokers unreachable; retrying", "brokers", a.Kafka.Brokers, "error", err)
			}
		} else {
			if st.live.setConnected(true, st.live.problemSince(now.Add(-kafkaPing)), now) {
				log.Info("misp: Kafka brokers reachable", "brokers", a.Kafka.Brokers)
			}
		}
		t.Reset(kafkaPing)
	}
}

func (a *App) kafkaOptions(log *slog.Logger) ([]kgo.Opt, error) {
	k := a.Kafka
	offset := kgo.NewOffset().AtStart()
	if k.Offset == "latest" {
		offset = kgo.NewOffset().AtEnd()
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(k.Brokers...),
		kgo.ConsumerGroup(k.Group),
		kgo.ConsumeTopics(k.Topics...),
		kgo.ConsumeResetOffset(offset),
		kgo.WithLogger(kafkaLogger{log}),
	}
	if k.ClientID != "" {
		opts = append(opts, kgo.ClientID(k.ClientID))
	}
	if k.TLS {
		conf := &tls.Config{MinVersion: tls.VersionTLS12}
		if k.CAFile != "" {
			roots, err := loadCAs(k.CAFile)
			if err != nil {
				return nil, fmt.Errorf("ca_file: %w", err)
			}
			conf.RootCAs = roots
		}
		opts = append(opts, kgo.DialTLSConfig(conf))
	}
	switch k.SASLMechanism {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: k.SASLUsername, Pass: k.SASLPassword.Reveal()}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: k.SASLUsername, Pass: k.SASLPassword.Reveal()}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: k.SASLUsername, Pass: k.SASLPassword.Reveal()}.AsSha512Mechanism()))
	}
	return opts, nil
}

// kafkaLogger hands franz-go's warnings and errors to the plugin's logger;
// its info level is chatty (every rebalance step).
type kafkaLogger struct{ log *slog.Logger }

func (kafkaLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l kafkaLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lv = slog.LevelError
	case kgo.LogLevelWarn:
		lv = slog.LevelWarn
	case kgo.LogLevelInfo:
		lv = slog.LevelInfo
	}
	l.log.Log(context.Background(), lv, "misp: kafka: "+msg, keyvals...)
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	zmq4 "github.com/pebbe/zmq4"

	"github.com/threatbus/threatbus/messages/stix"
	"github.com/threatbus/threatbus/plugins/apps/zmq/internal/zmqfd"
	"github.com/threatbus/threatbus/plugins/apps/zmq/zmqclient"
)

// The measured payload: a valid ~400-byte indicator whose last properties
// are a sequence number and the send time, at fixed offsets from the end so
// that the subscriber reads them without parsing.
const (
	seqDigits  = 9
	tsDigits   = 19
	warmupSeq  = 999999999
	tailFormat = `,"x_bench_seq":"%0*d","x_bench_ts":"%0*d"}`
)

var debugLat = os.Getenv("E2EBENCH_DEBUG") != ""

var tailLen = len(fmt.Sprintf(tailFormat, seqDigits, 0, tsDigits, 0))

func payloadTemplate() []byte {
	ind, err := stix.NewIndicator("[ipv4-addr:value = '198.51.100.23']", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		stix.WithProperty("name", json.RawMessage(`"C2 server 198.51.100.23"`)),
		stix.WithProperty("confidence", json.RawMessage(`75`)),
	)
	if err != nil {
		log.Fatal(err)
	}
	body := ind.Raw[:len(ind.Raw)-1] // without the closing brace
	return append(append([]byte{}, body...), fmt.Sprintf(tailFormat, seqDigits, 0, tsDigits, 0)...)
}

// stamp writes seq and ts into the tail of p.
func stamp(p []byte, seq int, ts int64) {
	tail := p[len(p)-tailLen:]
	putDigits(tail[len(`,"x_bench_seq":"`):], seqDigits, int64(seq))
	putDigits(tail[len(`,"x_bench_seq":"`)+seqDigits+len(`","x_bench_ts":"`):], tsDigits, ts)
}

func putDigits(b []byte, n int, v int64) {
	for i := n - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}

func readDigits(b []byte) int64 {
	var v int64
	for _, c := range b {
		v = v*10 + int64(c-'0')
	}
	return v
}

// parseTail returns the seq and send time of a payload made by stamp.
func parseTail(p []byte) (int, int64, bool) {
	if len(p) < tailLen {
		return 0, 0, false
	}
	tail := p[len(p)-tailLen:]
	s := len(`,"x_bench_seq":"`)
	t := s + seqDigits + len(`","x_bench_ts":"`)
	return int(readDigits(tail[s : s+seqDigits])), readDigits(tail[t : t+tsDigits]), true
}

// publisher connects (for the bus: to the port its manage endpoint names),
// sends warm-ups until told "go", then count messages at rate.
func publisher(mode, endpoint string, rate float64, count int) {
	host, port := hostPort(endpoint)
	topic := "stix2/indicator"
	if mode == "bus" {
		r, err := zmqclient.Subscribe(endpoint, []string{"threatbus/publish-only"}, 0, zmqclient.Timeout)
		if err != nil {
			log.Fatal(err)
		}
		defer func() { _, _ = zmqclient.Unsubscribe(endpoint, r.Topic, zmqclient.Timeout) }()
		port = r.SubPort
	}
	p, err := zmqclient.NewPublisher(host, port, 0)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if err := p.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}
	cancel()
	frame := append([]byte(topic+" "), payloadTemplate()...)
	fmt.Println("ready")
	goCh := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "go" {
				close(goCh)
				return
			}
		}
	}()
warmup:
	for {
		select {
		case <-goCh:
			break warmup
		case <-time.After(2 * time.Millisecond):
			stamp(frame, warmupSeq, time.Now().UnixNano())
			if err := p.Send(frame); err != nil {
				log.Fatal(err)
			}
		}
	}
	start := time.Now()
	perNs := rate / 1e9
	for i := 0; i < count; {
		due := int(float64(time.Since(start))*perNs) + 1
		if due > count {
			due = count
		}
		for ; i < due; i++ {
			stamp(frame, i, time.Now().UnixNano())
			if err := p.Send(frame); err != nil {
				log.Fatal(err)
			}
		}
		if i < count {
			time.Sleep(100 * time.Microsecond)
		}
	}
	elapsed := time.Since(start)
	b, _ := json.Marshal(pubReport{Sent: count, Seconds: elapsed.Seconds()})
	fmt.Println(string(b))
	if err := p.Close(30 * time.Second); err != nil {
		log.Print(err)
	}
}

func hostPort(endpoint string) (string, int) {
	host, err := zmqclient.Host(endpoint)
	if err != nil {
		log.Fatal(err)
	}
	port, err := strconv.Atoi(endpoint[len(host)+1:])
	if err != nil {
		log.Fatal(err)
	}
	return host, port
}

// subscriber opens n SUB sockets, each its own goroutine (for the bus, each
// an app with its own subscription), says "ready", "warm" once each got a
// warm-up, "done" once each got count measured messages, and reports when
// told "stop".
func subscriber(mode, endpoint string, n, count int) {
	host, port := hostPort(endpoint)
	type sock struct {
		s     *zmq4.Socket
		w     *zmqfd.Waiter
		p2p   string
		seen  []bool
		got   int
		lat   []int64
		warm  atomic.Bool
		doneC chan struct{}
		bySeq []int64 // latency by sequence number, with E2EBENCH_DEBUG
	}
	socks := make([]*sock, n)
	for i := range socks {
		topic, pubPort := "stix2/indicator", port
		if mode == "bus" {
			r, err := zmqclient.Subscribe(endpoint, []string{"stix2/indicator"}, 0, zmqclient.Timeout)
			if err != nil {
				log.Fatal(err)
			}
			topic, pubPort = r.Topic, r.PubPort
		}
		s, err := zmq4.NewSocket(zmq4.SUB)
		if err != nil {
			log.Fatal(err)
		}
		_ = s.SetLinger(0)
		_ = s.SetRcvhwm(10000)
		if err := s.Connect(fmt.Sprintf("tcp://%s:%d", host, pubPort)); err != nil {
			log.Fatal(err)
		}
		if err := s.SetSubscribe(topic); err != nil {
			log.Fatal(err)
		}
		w, err := zmqfd.New(s)
		if err != nil {
			log.Fatal(err)
		}
		socks[i] = &sock{s: s, w: w, p2p: topic, seen: make([]bool, count), lat: make([]int64, 0, count), doneC: make(chan struct{})}
		if debugLat {
			socks[i].bySeq = make([]int64, count)
		}
	}
	fmt.Println("ready")
	var stop atomic.Bool
	var wg sync.WaitGroup
	for _, k := range socks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				frame, err := k.s.RecvBytes(zmq4.DONTWAIT)
				if err != nil {
					// Wait without holding a P: with ten sockets, ten
					// blocked cgo calls would starve the process.
					if _, err := k.w.Readable(k.s, 100*time.Millisecond); err != nil {
						log.Fatal(err)
					}
					continue
				}
				now := time.Now().UnixNano()
				seq, ts, ok := parseTail(frame)
				if !ok {
					continue
				}
				if seq == warmupSeq {
					k.warm.Store(true)
					continue
				}
				if seq < count && !k.seen[seq] {
					k.seen[seq] = true
					k.got++
					k.lat = append(k.lat, now-ts)
					if debugLat {
						k.bySeq[seq] = now - ts
					}
					if k.got == count {
						close(k.doneC)
					}
				}
			}
		}()
	}
	// warm: every socket got a warm-up.
	for {
		all := true
		for _, k := range socks {
			all = all && k.warm.Load()
		}
		if all {
			break
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Println("warm")
	stopC := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "stop" {
				break
			}
		}
		close(stopC)
	}()
	allDone := make(chan struct{})
	go func() {
		for _, k := range socks {
			select {
			case <-k.doneC:
			case <-stopC:
				return
			}
		}
		close(allDone)
	}()
	select {
	case <-allDone:
		fmt.Println("done")
		<-stopC
	case <-stopC:
	}
	stop.Store(true)
	wg.Wait()
	if debugLat {
		// Stall episodes on the first socket: runs of messages over 5 ms.
		k := socks[0]
		for i := 0; i < count; {
			if k.bySeq[i] <= 5e6 {
				i++
				continue
			}
			j, worst := i, int64(0)
			for j < count && k.bySeq[j] > 5e6 {
				worst = max(worst, k.bySeq[j])
				j++
			}
			log.Printf("stall: seq %d..%d (%d msgs), worst %s", i, j-1, j-i, time.Duration(worst))
			i = j
		}
	}
	var rep subReport
	var lat []int64
	for _, k := range socks {
		rep.Received = append(rep.Received, k.got)
		lat = append(lat, k.lat...)
		k.w.Close()
		_ = k.s.Close()
		if mode == "bus" {
			_, _ = zmqclient.Unsubscribe(endpoint, k.p2p, zmqclient.Timeout)
		}
	}
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		rep.P50, rep.P99, rep.Max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	b, _ := json.Marshal(rep)
	fmt.Println(string(b))
}

// forwarder is the ceiling: a SUB socket bound on in, a PUB socket bound on
// out, and zmq_proxy between them. Its queues hold as much as the bus's
// defaults do on the same path: receive_hwm on the way in; bus.outbox,
// max_pending and send_hwm (10000 + 1000 + 1000) on the way out.
func forwarder(in, out int) {
	sub, err := zmq4.NewSocket(zmq4.SUB)
	if err != nil {
		log.Fatal(err)
	}
	_ = sub.SetRcvhwm(10000)
	if err := sub.Bind(fmt.Sprintf("tcp://127.0.0.1:%d", in)); err != nil {
		log.Fatal(err)
	}
	if err := sub.SetSubscribe("stix2/"); err != nil {
		log.Fatal(err)
	}
	pub, err := zmq4.NewSocket(zmq4.PUB)
	if err != nil {
		log.Fatal(err)
	}
	_ = pub.SetSndhwm(12000)
	if err := pub.Bind(fmt.Sprintf("tcp://127.0.0.1:%d", out)); err != nil {
		log.Fatal(err)
	}
	fmt.Println("ready")
	log.Fatal(zmq4.Proxy(sub, pub, nil))
}

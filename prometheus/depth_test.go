package dlxprom_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	dlxprom "github.com/dlxretry/dlxretry/prometheus"
)

// TestParkingDepth reads the depth of a parking queue with messages in it,
// scrape after scrape, without taking them; a queue without a parking queue
// is counted as an error and does not stop the others.
func TestParkingDepth(t *testing.T) {
	url := brokerURL(t)
	topo := declare(t, url)
	withChannel(t, url, func(ch *amqp.Channel) error {
		for i := range 3 {
			err := ch.PublishWithContext(context.Background(), topo.ParkingExchange(), "", false, false,
				amqp.Publishing{Body: fmt.Appendf(nil, "parked %d", i)})
			if err != nil {
				return err
			}
		}
		return nil
	})
	conn, err := dlxretry.NewConn(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	missing := topo.Queue + ".missing"
	_, reg := newCollector(t, dlxprom.WithParkingDepth(conn, missing, topo.Queue))
	for scrape := 1; scrape <= 3; scrape++ {
		want(t, samples(t, reg), map[string]float64{
			fmt.Sprintf("dlxretry_parking_queue_messages{queue=%q}", topo.Queue):          3,
			fmt.Sprintf("dlxretry_parking_queue_messages{queue=%q}", missing):             -1,
			fmt.Sprintf("dlxretry_parking_queue_read_errors_total{queue=%q}", missing):    float64(scrape),
			fmt.Sprintf("dlxretry_parking_queue_read_errors_total{queue=%q}", topo.Queue): -1,
		})
	}
	withChannel(t, url, func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclarePassive(topo.ParkingQueue(), true, false, false, false, nil)
		if err == nil && q.Messages != 3 {
			err = fmt.Errorf("%d messages left in %s, want 3", q.Messages, topo.ParkingQueue())
		}
		return err
	})
}

// TestParkingDepthTimeout: a broker that never answers costs a scrape no
// more than the timeout, and the depth is counted as a read error.
func TestParkingDepthTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accepted, never answered
		}
	}()
	conn, err := dlxretry.NewConn("amqp://guest:guest@"+l.Addr().String()+"/", dlxretry.WithConnectTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, reg := newCollector(t, dlxprom.WithParkingDepth(conn, "orders"), dlxprom.WithParkingDepthTimeout(200*time.Millisecond))
	for scrape := 1; scrape <= 2; scrape++ {
		start := time.Now()
		got := samples(t, reg)
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("scrape %d took %v with a 200ms timeout", scrape, took)
		}
		want(t, got, map[string]float64{
			`dlxretry_parking_queue_messages{queue="orders"}`:          -1,
			`dlxretry_parking_queue_read_errors_total{queue="orders"}`: float64(scrape),
		})
	}
}

// Package brokertest finds a RabbitMQ broker for tests and gives each test
// names of its own.
//
// The broker is, in order: the one RABBITMQ_URL names; one on
// localhost:5672; a container started with testcontainers-go where Docker
// runs (by the program in ./container, a module of its own). With none of them, tests skip with a hint, unless
// DLXRETRY_REQUIRE_BROKER is set (as CI does), which makes them fail.
package brokertest

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RequireEnv is the variable that turns a missing broker into a failure.
const RequireEnv = "DLXRETRY_REQUIRE_BROKER"

const localURL = "amqp://guest:guest@localhost:5672/"

var (
	once   sync.Once
	url    string
	urlErr error
)

// URL returns the URL of a broker the test can use, or skips the test.
func URL(t testing.TB) string {
	t.Helper()
	once.Do(func() { url, urlErr = find() })
	if urlErr != nil {
		msg := fmt.Sprintf("no RabbitMQ broker: %v; set RABBITMQ_URL, run one on localhost:5672 or start Docker", urlErr)
		if os.Getenv(RequireEnv) != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return url
}

func find() (string, error) {
	if u := os.Getenv("RABBITMQ_URL"); u != "" {
		return u, nil
	}
	if c, err := net.DialTimeout("tcp", "localhost:5672", time.Second); err == nil {
		c.Close()
		return localURL, nil
	}
	return startContainer()
}

// startContainer runs a RabbitMQ container for the life of the test binary
// where a Docker engine answers, with the program in ./container (a module
// of its own, so that testcontainers-go stays out of the library's
// go.mod). The program keeps the container until its standard input, held
// open here, closes with this process.
func startContainer() (string, error) {
	if !dockerRuns() {
		return "", errors.New("no broker on localhost:5672 and no Docker engine for a container")
	}
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "run", ".")
	cmd.Dir = filepath.Join(filepath.Dir(file), "container")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start the container program: %w", err)
	}
	keepAlive = stdin
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- strings.TrimSpace(line)
	}()
	select {
	case u := <-lines:
		if u == "" {
			return "", errors.New("the container program gave no URL (see its output above)")
		}
		return u, nil
	case <-time.After(5 * time.Minute):
		_ = cmd.Process.Kill()
		return "", errors.New("no container within 5 minutes")
	}
}

// keepAlive is the container program's standard input, open for the life of
// the test binary.
var keepAlive io.Closer

// dockerRuns reports whether a Docker engine is likely to answer.
func dockerRuns() bool {
	if os.Getenv("DOCKER_HOST") != "" {
		return true
	}
	_, err := os.Stat("/var/run/docker.sock")
	return err == nil
}

// Dial opens a connection named after the test, closed when the test ends.
func Dial(t testing.TB) *amqp.Connection {
	t.Helper()
	return DialNamed(t, Name(t, "conn"))
}

// DialNamed opens a connection with the given connection_name, closed when
// the test ends. Fault tests close it by name with rabbitmqctl.
func DialNamed(t testing.TB, name string) *amqp.Connection {
	t.Helper()
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	conn, err := amqp.DialConfig(URL(t), amqp.Config{Properties: props})
	if err != nil {
		t.Fatalf("dial broker: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Channel opens a channel on a new connection, closed when the test ends.
func Channel(t testing.TB) *amqp.Channel {
	t.Helper()
	ch, err := Dial(t).Channel()
	if err != nil {
		t.Fatalf("open channel: %v", err)
	}
	return ch
}

var unsafe = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// Name returns a name unique to this run of the test: "t.<test>.<what>.<random>".
func Name(t testing.TB, what string) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	test := strings.Trim(unsafe.ReplaceAllString(t.Name(), "-"), "-")
	if len(test) > 60 {
		test = test[len(test)-60:]
	}
	return "t." + test + "." + what + "." + hex.EncodeToString(b)
}

// Queue declares a durable queue with a name of its own for the test, and
// deletes it when the test ends. Tests never declare non-durable,
// non-exclusive queues: RabbitMQ 4.x deprecates them.
func Queue(t testing.TB, what string, args amqp.Table) string {
	t.Helper()
	name := Name(t, what)
	if _, err := Channel(t).QueueDeclare(name, true, false, false, false, args); err != nil {
		t.Fatalf("declare queue %s: %v", name, err)
	}
	t.Cleanup(func() {
		if _, err := cleanupChannel(t).QueueDelete(name, false, false, false); err != nil {
			t.Errorf("cleanup: delete queue %s: %v", name, err)
		}
	})
	return name
}

// Exchange declares a durable exchange of kind with a name of its own for
// the test, and deletes it when the test ends.
func Exchange(t testing.TB, what, kind string) string {
	t.Helper()
	name := Name(t, what)
	if err := Channel(t).ExchangeDeclare(name, kind, true, false, false, false, nil); err != nil {
		t.Fatalf("declare exchange %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := cleanupChannel(t).ExchangeDelete(name, false, false); err != nil {
			t.Errorf("cleanup: delete exchange %s: %v", name, err)
		}
	})
	return name
}

// cleanupChannel opens a channel on a connection of its own, for cleanups
// that run after the test's own connections have closed.
func cleanupChannel(t testing.TB) *amqp.Channel {
	conn, err := amqp.Dial(URL(t))
	if err != nil {
		t.Fatalf("cleanup: dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("cleanup: channel: %v", err)
	}
	return ch
}

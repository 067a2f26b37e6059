// Package clustertest runs the library, as a user would, against a 3-node
// RabbitMQ cluster with quorum queues, and counts every message through
// node faults: none, a SIGKILL of the node that leads the queues, a SIGKILL
// of the node the clients use, a SIGKILL of a node that is both, stop_app
// of each node, and close_all_connections. Each test publishes a few
// thousand messages with a [github.com/dlxretry/dlxretry.Publisher] over
// the three nodes' URLs (publishing again what fails, as a user would),
// consumes them with a [github.com/dlxretry/dlxretry.Consumer] (20% fail
// once, 1% always), and checks by message id that none is lost, that
// duplicates stay within what was in flight at the faults, and that the
// retries settle within a bound set by the downtime and the broker's
// dead_letter_worker_publisher_confirm_timeout.
//
// The cluster is .ci/cluster's (as root, from the repository root):
//
//	.ci/cluster start
//	DLXRETRY_CLUSTER_URLS="$(.ci/cluster urls)" DLXRETRY_CLUSTER_CTL="$PWD/.ci/cluster" \
//	    go test -race -count=1 -v ./internal/clustertest
//	.ci/cluster stop
//
// DLXRETRY_CLUSTER_URLS holds the nodes' AMQP URLs, node 1 first, separated
// by spaces or commas; DLXRETRY_CLUSTER_CTL is the command that controls
// them, called as "CTL kill N", "CTL restart N", "CTL stop_app N",
// "CTL start_app N", "CTL start" and "CTL ctl N rabbitmqctl-args...". Without
// them the tests skip, unless DLXRETRY_REQUIRE_CLUSTER=1, which makes them
// fail. DLXRETRY_CLUSTER_MESSAGES (default 3000) sets the messages a test
// publishes, DLXRETRY_CLUSTER_DOWNTIME (default 5s) how long a killed node
// stays down, and DLXRETRY_CLUSTER_REPORT=FILE appends each test's row of
// counts to FILE as a Markdown table row.
package clustertest

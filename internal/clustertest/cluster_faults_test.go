package clustertest_test

import (
	"fmt"
	"testing"
)

// The queues are declared from node 1, which leads them; the clients connect
// to node 2 first unless a test says otherwise.

func TestClusterNoFault(t *testing.T) {
	runScenario(t, scenario{fault: "none", leader: 1, clients: 2, inject: none})
}

// A SIGKILL of the node that leads the queues; the clients are on another.
func TestClusterKillLeader(t *testing.T) {
	runScenario(t, scenario{fault: "SIGKILL leader node", leader: 1, clients: 2, inject: kill(1, true)})
}

// A SIGKILL of the node the clients use; the queues are led by another.
func TestClusterKillClientNode(t *testing.T) {
	runScenario(t, scenario{fault: "SIGKILL clients' node", leader: 1, clients: 2, inject: kill(2, false)})
}

// A SIGKILL of the node that leads the queues and that the clients use.
func TestClusterKillLeaderAndClientNode(t *testing.T) {
	runScenario(t, scenario{fault: "SIGKILL leader+clients' node", leader: 1, clients: 1, inject: kill(1, true)})
}

// rabbitmqctl stop_app, then start_app, on each node in turn: the leader's,
// the clients', the third.
func TestClusterStopApp(t *testing.T) {
	for _, n := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("node%d", n), func(t *testing.T) {
			runScenario(t, scenario{fault: fmt.Sprintf("stop_app node %d", n), leader: 1, clients: 2, inject: stopApp(n, n == 1)})
		})
	}
}

// rabbitmqctl close_all_connections, three times, a second apart.
func TestClusterCloseAllConnections(t *testing.T) {
	runScenario(t, scenario{fault: "close_all_connections ×3", leader: 1, clients: 2, inject: closeAll(3)})
}

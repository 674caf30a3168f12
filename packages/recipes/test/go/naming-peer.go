// Command naming-peer is the Go side of Cairn's naming interop test: it speaks etcd's own
// naming/endpoints code (the Manager grpc-go's etcd resolver is built on), so the test
// checks Cairn against the real format rather than against our reading of it.
//
// Usage:
//
//	naming-peer ENDPOINTS TARGET add ADDR [METADATA_JSON]
//	naming-peer ENDPOINTS TARGET watch
//
// add puts TARGET/ADDR on a 10 s lease kept alive, prints "added <lease>" and stays up; on
// SIGTERM or SIGINT it revokes the lease (removing the endpoint) and prints "removed".
// watch prints each update from Manager.NewWatchChannel as one JSON line.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/naming/endpoints"
)

type line struct {
	Op       string      `json:"op"`
	Key      string      `json:"key"`
	Addr     string      `json:"addr"`
	Metadata interface{} `json:"metadata"`
}

func main() {
	if len(os.Args) < 4 {
		fail("usage: naming-peer ENDPOINTS TARGET add ADDR [METADATA_JSON] | naming-peer ENDPOINTS TARGET watch")
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(os.Args[1], ","),
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		fail("connect: %v", err)
	}
	defer client.Close()
	manager, err := endpoints.NewManager(client, os.Args[2])
	if err != nil {
		fail("manager: %v", err)
	}
	switch os.Args[3] {
	case "add":
		if len(os.Args) < 5 {
			fail("add needs an address")
		}
		add(client, manager, os.Args[2], os.Args[4], os.Args[5:])
	case "watch":
		watch(manager)
	default:
		fail("unknown command %q", os.Args[3])
	}
}

func add(client *clientv3.Client, manager endpoints.Manager, target, addr string, rest []string) {
	var metadata interface{}
	if len(rest) > 0 {
		if err := json.Unmarshal([]byte(rest[0]), &metadata); err != nil {
			fail("metadata: %v", err)
		}
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	ctx := context.Background()
	lease, err := client.Grant(ctx, 10)
	if err != nil {
		fail("grant: %v", err)
	}
	alive, err := client.KeepAlive(ctx, lease.ID)
	if err != nil {
		fail("keepalive: %v", err)
	}
	go func() {
		for range alive {
		}
	}()
	endpoint := endpoints.Endpoint{Addr: addr, Metadata: metadata}
	if err := manager.AddEndpoint(ctx, target+"/"+addr, endpoint, clientv3.WithLease(lease.ID)); err != nil {
		fail("add: %v", err)
	}
	fmt.Printf("added %x\n", int64(lease.ID))
	<-stop
	revoke, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := client.Revoke(revoke, lease.ID); err != nil {
		fail("revoke: %v", err)
	}
	fmt.Println("removed")
}

func watch(manager endpoints.Manager) {
	updates, err := manager.NewWatchChannel(context.Background())
	if err != nil {
		fail("watch: %v", err)
	}
	// The first line says the initial list has been read, so a caller can write after it
	// knowing the change will arrive as an update.
	fmt.Println(`{"op":"ready"}`)
	out := json.NewEncoder(os.Stdout)
	for batch := range updates {
		for _, up := range batch {
			op := "add"
			if up.Op == endpoints.Delete {
				op = "delete"
			}
			if err := out.Encode(line{Op: op, Key: up.Key, Addr: up.Endpoint.Addr, Metadata: up.Endpoint.Metadata}); err != nil {
				fail("write: %v", err)
			}
		}
	}
	fail("watch channel closed")
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "naming-peer: "+format+"\n", args...)
	os.Exit(1)
}

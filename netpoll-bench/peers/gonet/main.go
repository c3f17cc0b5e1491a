// The go-net peer of netpoll-bench: Go's net package as Go code reads, a goroutine per
// connection echoing through a 4 KiB buffer. Prints "listening on ADDR" once ready and exits on
// SIGINT/SIGTERM. The bench tool builds it (go build) and runs it with GOMAXPROCS=1, or
// GOMAXPROCS=N for --loops N.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on, HOST:PORT")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-net:", err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", ln.Addr())

	// A signal closes the listener: Accept then fails with net.ErrClosed and main returns.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-signals
		ln.Close()
	}()

	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: back off as net/http's Server does.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go echo(conn)
	}
}

// echo copies what conn sends back to it until end of stream or an error. (Go's TCP
// connections have TCP_NODELAY already.)
func echo(conn net.Conn) {
	defer conn.Close()
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

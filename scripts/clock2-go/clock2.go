// Clock2 is the concurrent clock server of "The Go Programming Language" §8.2 (gopl.io/ch8/clock2),
// kept as the book has it, plus what the benchmark needs to start it like ours: -host, -port
// (0 for a free one), -tz, a "listening on ADDR" line on stderr, and -max-clients (ignored).
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"
)

var loc = time.Local

func handleConn(c net.Conn) {
	defer c.Close()
	for {
		_, err := io.WriteString(c, time.Now().In(loc).Format("15:04:05\n"))
		if err != nil {
			return // e.g., client disconnected
		}
		time.Sleep(1 * time.Second)
	}
}

func main() {
	host := flag.String("host", "localhost", "address to listen on")
	port := flag.Int("port", 8000, "port to listen on")
	tz := flag.String("tz", "", "time zone")
	flag.Int("max-clients", 0, "ignored")
	flag.Parse()
	if *tz != "" {
		zone, err := time.LoadLocation(*tz)
		if err != nil {
			log.Fatal(err)
		}
		loc = zone
	}
	listener, err := net.Listen("tcp", net.JoinHostPort(*host, fmt.Sprint(*port)))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "listening on %s\n", listener.Addr())
	for {
		conn, err := listener.Accept()
		if err != nil {
			log.Print(err) // e.g., connection aborted
			continue
		}
		go handleConn(conn) // handle connections concurrently
	}
}

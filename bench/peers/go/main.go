// The Go peer of bench/peers/run.py: the same four workloads as the Tokio
// and libuv peers and weft's own programs, with GOMAXPROCS set to WORKERS.
//
//	peer_go echo PORT WORKERS          TCP echo server on 127.0.0.1:PORT
//	peer_go http PORT WORKERS          HTTP/1.1 keep-alive "hello" server
//	peer_go timers N WORKERS           N goroutines, each sleeping until its
//	                                   own start plus a uniform 0-100 ms
//	peer_go pingpong PAIRS RTS WORKERS PAIRS pairs of goroutines bouncing a
//	                                   value over two capacity-1 channels,
//	                                   RTS round trips each
//
// Servers print "peer_go: listening on 127.0.0.1:PORT" and run until
// killed; the other two print one line of key=value figures for run.py (the
// same format in every peer). The HTTP server is hand-rolled, not net/http,
// so that it does the same work per request as the Tokio and libuv peers.
package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The bytes examples/http_server.c and bench/netbase.h answer "GET /" with.
var hello = []byte("HTTP/1.1 200 OK\r\nServer: weft\r\nContent-Type: text/plain\r\n" +
	"Content-Length: 13\r\n\r\nHello, World!")

func usage() {
	fmt.Fprintln(os.Stderr, "usage: peer_go echo|http PORT WORKERS\n       peer_go timers N WORKERS\n"+
		"       peer_go pingpong PAIRS RTS WORKERS")
	os.Exit(2)
}

func argNum(i int, min uint64) uint64 {
	if i >= len(os.Args) {
		usage()
	}
	v, err := strconv.ParseUint(os.Args[i], 10, 64)
	if err != nil || v < min {
		usage()
	}
	return v
}

// ------------------------------------------------------------ servers

func echoConn(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Every complete request head in one read is answered, in order, in one
// write (pipelining, as examples/http_server.c does). Requests carry no body
// here (GET from loadgen and wrk); a head over the buffer closes.
func httpConn(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 16384)
	out := make([]byte, 0, 16384)
	sep := []byte("\r\n\r\n")
	n := 0
	for {
		k, err := c.Read(buf[n:])
		if k <= 0 || err != nil {
			return
		}
		n += k
		start := 0
		out = out[:0]
		for {
			pos := bytes.Index(buf[start:n], sep)
			if pos < 0 {
				break
			}
			out = append(out, hello...)
			start += pos + 4
		}
		if start == 0 && n == len(buf) {
			return
		}
		copy(buf, buf[start:n])
		n -= start
		if len(out) > 0 {
			if _, werr := c.Write(out); werr != nil {
				return
			}
		}
	}
}

func serve(mode string, port uint64) {
	l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "peer_go: listen on 127.0.0.1:%d: %v\n", port, err)
		os.Exit(1)
	}
	fmt.Printf("peer_go: listening on 127.0.0.1:%d\n", l.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintf(os.Stderr, "peer_go: accept: %v\n", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c.(*net.TCPConn).SetNoDelay(true) // Go's default too; said for parity
		if mode == "http" {
			go httpConn(c)
		} else {
			go echoConn(c)
		}
	}
}

// ------------------------------------------------------------ timers

// The delay of task i: splitmix64 of i, uniform over [0, 100 ms) in ns. The
// same function in every peer.
func delayNs(i uint64) uint64 {
	z := i + 0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	z ^= z >> 31
	return z % 100000000
}

func cpuUs() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec)*1e6 + float64(ru.Utime.Usec) +
		float64(ru.Stime.Sec)*1e6 + float64(ru.Stime.Usec)
}

func timers(n uint64) {
	late := make([]int64, n)
	var wg sync.WaitGroup
	c0 := cpuUs()
	t0 := time.Now()
	wg.Add(int(n))
	for i := uint64(0); i < n; i++ {
		go func(i uint64) {
			start := time.Now()
			target := start.Add(time.Duration(delayNs(i)))
			time.Sleep(time.Until(target))
			late[i] = int64(time.Since(target)) // monotonic; negative = early
			wg.Done()
		}(i)
	}
	wg.Wait()
	wall := time.Since(t0)
	cpu := cpuUs() - c0
	early := 0
	sum := 0.0
	for _, l := range late {
		if l < 0 {
			early++
		}
		sum += float64(l)
	}
	sort.Slice(late, func(a, b int) bool { return late[a] < late[b] })
	p := int(float64(len(late)) * 0.99)
	if p >= len(late) {
		p = len(late) - 1
	}
	fmt.Printf("peer_go: timers n=%d mean_us=%.1f p99_us=%.1f max_us=%.1f wall_ms=%.1f cpu_ms=%.1f early=%d\n",
		n, sum/float64(len(late))/1e3, float64(late[p])/1e3, float64(late[len(late)-1])/1e3,
		float64(wall)/1e6, cpu/1e3, early)
}

// ------------------------------------------------------------ ping-pong

func pingpongRun(pairs, rts uint64) {
	var wg sync.WaitGroup
	wg.Add(int(pairs))
	for p := uint64(0); p < pairs; p++ {
		a := make(chan uint64, 1)
		b := make(chan uint64, 1)
		go func() {
			for v := range a {
				b <- v
			}
		}()
		go func() {
			for r := uint64(0); r < rts; r++ {
				a <- r
				if v := <-b; v != r {
					fmt.Fprintf(os.Stderr, "peer_go: pingpong got %d for %d\n", v, r)
					os.Exit(1)
				}
			}
			close(a)
			wg.Done()
		}()
	}
	wg.Wait()
}

func pingpong(pairs, rts uint64) {
	warm := rts / 10 // threads started, stacks grown
	if warm == 0 {
		warm = 1
	}
	pingpongRun(pairs, warm)
	c0 := cpuUs()
	t0 := time.Now()
	pingpongRun(pairs, rts)
	wall := time.Since(t0)
	cpu := cpuUs() - c0
	total := float64(pairs * rts)
	fmt.Printf("peer_go: pingpong pairs=%d rts=%d ns_per_rt=%.1f cpu_ns_per_rt=%.1f wall_ms=%.1f\n",
		pairs, rts, float64(wall)/total, cpu*1e3/total, float64(wall)/1e6)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch mode := os.Args[1]; {
	case (mode == "echo" || mode == "http") && len(os.Args) == 4:
		port := argNum(2, 0)
		if port > 65535 {
			usage()
		}
		runtime.GOMAXPROCS(int(argNum(3, 1)))
		serve(mode, port)
	case mode == "timers" && len(os.Args) == 4:
		runtime.GOMAXPROCS(int(argNum(3, 1)))
		timers(argNum(2, 1))
	case mode == "pingpong" && len(os.Args) == 5:
		runtime.GOMAXPROCS(int(argNum(4, 1)))
		pingpong(argNum(2, 1), argNum(3, 1))
	default:
		usage()
	}
}

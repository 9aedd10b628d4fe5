// The Tokio peer of bench/peers/run.py: the same four workloads as the Go
// and libuv peers and weft's own programs, on a multi-thread runtime with
// WORKERS worker threads.
//
//   peer_tokio echo PORT WORKERS          TCP echo server on 127.0.0.1:PORT
//   peer_tokio http PORT WORKERS          HTTP/1.1 keep-alive "hello" server
//   peer_tokio timers N WORKERS           N tasks, each sleeping until its own
//                                         start plus a uniform 0-100 ms
//   peer_tokio pingpong PAIRS RTS WORKERS PAIRS pairs of tasks bouncing a value
//                                         over two capacity-1 channels, RTS
//                                         round trips each
//
// Servers print "peer_tokio: listening on 127.0.0.1:PORT" and run until
// killed. The other two print one line of key=value figures that run.py
// parses (the same format in every peer; run.py says it).
//
// The accept loop and the root of the timers and ping-pong workloads run as
// tasks on the runtime, not in block_on's thread, so that all work happens
// on the WORKERS threads and spawns go to a worker's own queue, as they do in
// weft (a root task spawning) and in Go (the main goroutine spawning).

use std::io::Write;
use std::process::exit;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

// The bytes examples/http_server.c and bench/netbase.h answer "GET /" with,
// so that every server sends the same response.
const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nServer: weft\r\nContent-Type: text/plain\r\n\
Content-Length: 13\r\n\r\nHello, World!";

fn usage() -> ! {
    eprintln!(
        "usage: peer_tokio echo|http PORT WORKERS\n       peer_tokio timers N WORKERS\n       \
         peer_tokio pingpong PAIRS RTS WORKERS"
    );
    exit(2);
}

fn arg_num(args: &[String], i: usize, min: u64) -> u64 {
    match args.get(i).and_then(|s| s.parse::<u64>().ok()) {
        Some(v) if v >= min => v,
        _ => usage(),
    }
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("peer_tokio: runtime: {}", e);
            exit(1);
        }
    }
}

// ------------------------------------------------------------ servers

async fn echo_conn(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if s.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n")
}

// Every complete request head in one read is answered, in order, in one
// write (pipelining, as examples/http_server.c does). Requests carry no body
// here (GET from loadgen and wrk); a head over the buffer closes.
async fn http_conn(mut s: TcpStream) {
    let mut buf = vec![0u8; 16384];
    let mut len = 0;
    let mut out: Vec<u8> = Vec::with_capacity(16384);
    loop {
        let n = match s.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        len += n;
        let mut start = 0;
        out.clear();
        while let Some(pos) = find_head_end(&buf[start..len]) {
            out.extend_from_slice(HELLO);
            start += pos + 4;
        }
        if start == 0 && len == buf.len() {
            return;
        }
        buf.copy_within(start..len, 0);
        len -= start;
        if !out.is_empty() && s.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn serve(mode: &str, port: u16, workers: usize) {
    let rt = runtime(workers);
    let http = mode == "http";
    let root = rt.spawn(async move {
        let l = match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("peer_tokio: listen on 127.0.0.1:{}: {}", port, e);
                exit(1);
            }
        };
        let p = l.local_addr().map(|a| a.port()).unwrap_or(0);
        println!("peer_tokio: listening on 127.0.0.1:{}", p);
        let _ = std::io::stdout().flush();
        loop {
            match l.accept().await {
                Ok((s, _)) => {
                    let _ = s.set_nodelay(true);
                    if http {
                        tokio::spawn(http_conn(s));
                    } else {
                        tokio::spawn(echo_conn(s));
                    }
                }
                Err(e) => {
                    eprintln!("peer_tokio: accept: {}", e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
    let _ = rt.block_on(root);
}

// ------------------------------------------------------------ timers

// The delay of task i: splitmix64 of i, uniform over [0, 100 ms) in ns. The
// same function in every peer, so each sleeps the same set of delays.
fn delay_ns(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    z % 100_000_000
}

fn cpu_us() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn timers(n: u64, workers: usize) {
    let rt = runtime(workers);
    let c0 = cpu_us();
    let t0 = Instant::now();
    let late: Vec<i64> = rt
        .block_on(rt.spawn(async move {
            let mut hs = Vec::with_capacity(n as usize);
            for i in 0..n {
                hs.push(tokio::spawn(async move {
                    let start = Instant::now();
                    let target = start + Duration::from_nanos(delay_ns(i));
                    tokio::time::sleep_until(target.into()).await;
                    let now = Instant::now();
                    if now >= target {
                        (now - target).as_nanos() as i64
                    } else {
                        -((target - now).as_nanos() as i64)
                    }
                }));
            }
            let mut late = Vec::with_capacity(n as usize);
            for h in hs {
                late.push(h.await.expect("timer task"));
            }
            late
        }))
        .expect("timers root");
    let wall = t0.elapsed();
    let cpu = cpu_us() - c0;
    report_lateness("peer_tokio", n, late, wall, cpu);
}

fn report_lateness(who: &str, n: u64, mut late: Vec<i64>, wall: Duration, cpu_us: f64) {
    let early = late.iter().filter(|&&l| l < 0).count();
    late.sort_unstable();
    let mean = late.iter().map(|&l| l as f64).sum::<f64>() / late.len() as f64;
    let p99 = late[((late.len() as f64 * 0.99) as usize).min(late.len() - 1)];
    let max = late[late.len() - 1];
    println!(
        "{}: timers n={} mean_us={:.1} p99_us={:.1} max_us={:.1} wall_ms={:.1} cpu_ms={:.1} early={}",
        who,
        n,
        mean / 1e3,
        p99 as f64 / 1e3,
        max as f64 / 1e3,
        wall.as_secs_f64() * 1e3,
        cpu_us / 1e3,
        early
    );
}

// ------------------------------------------------------------ ping-pong

async fn pingpong_run(pairs: u64, rts: u64) {
    let mut hs = Vec::with_capacity(pairs as usize);
    for _ in 0..pairs {
        let (atx, mut arx) = mpsc::channel::<u64>(1);
        let (btx, mut brx) = mpsc::channel::<u64>(1);
        tokio::spawn(async move {
            while let Some(v) = arx.recv().await {
                if btx.send(v).await.is_err() {
                    break;
                }
            }
        });
        hs.push(tokio::spawn(async move {
            for r in 0..rts {
                atx.send(r).await.expect("ping");
                let v = brx.recv().await.expect("pong");
                if v != r {
                    eprintln!("peer_tokio: pingpong got {} for {}", v, r);
                    exit(1);
                }
            }
        }));
    }
    for h in hs {
        h.await.expect("pinger");
    }
}

fn pingpong(pairs: u64, rts: u64, workers: usize) {
    let rt = runtime(workers);
    // A warm-up of a tenth of the round trips: threads started, pools grown.
    rt.block_on(rt.spawn(pingpong_run(pairs, (rts / 10).max(1)))).expect("warm-up");
    let c0 = cpu_us();
    let t0 = Instant::now();
    rt.block_on(rt.spawn(pingpong_run(pairs, rts))).expect("pingpong");
    let wall = t0.elapsed();
    let cpu = cpu_us() - c0;
    let total = (pairs * rts) as f64;
    println!(
        "peer_tokio: pingpong pairs={} rts={} ns_per_rt={:.1} cpu_ns_per_rt={:.1} wall_ms={:.1}",
        pairs,
        rts,
        wall.as_nanos() as f64 / total,
        cpu * 1e3 / total,
        wall.as_secs_f64() * 1e3
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(|s| s.as_str()) {
        Some(m @ ("echo" | "http")) if args.len() == 4 => {
            let port = arg_num(&args, 2, 0);
            if port > 65535 {
                usage();
            }
            serve(m, port as u16, arg_num(&args, 3, 1) as usize);
        }
        Some("timers") if args.len() == 4 => timers(arg_num(&args, 2, 1), arg_num(&args, 3, 1) as usize),
        Some("pingpong") if args.len() == 5 => pingpong(
            arg_num(&args, 2, 1),
            arg_num(&args, 3, 1),
            arg_num(&args, 4, 1) as usize,
        ),
        _ => usage(),
    }
}

//! Heap allocations per object GET on the fast path (from the object cache, and from a volume
//! file with sendfile), counted by a counting global allocator over a few thousand keep-alive requests on a real in-process node.
//! The client is a blocking socket on its own thread that allocates nothing while counting.
//! Run with `--nocapture` to see the figures.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use support::{png, request, Node};
use tessera_api::fastpath;
use tessera_api::token;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts them.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const REQUESTS: u64 = 2000;

/// Sends `request` `REQUESTS` times on one keep-alive connection and returns the allocations
/// the whole process made per request meanwhile. Every response has the same length (the
/// `Date` header has a fixed width), learnt from a first, uncounted exchange.
fn allocations_per_request(addr: std::net::SocketAddr, request: String) -> f64 {
    std::thread::spawn(move || {
        let mut socket = std::net::TcpStream::connect(addr).expect("connect");
        socket.set_nodelay(true).expect("nodelay");
        socket.write_all(request.as_bytes()).expect("write");
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0;
        // The first response: read until its head and Content-Length bytes of body are in.
        let total = loop {
            len += socket.read(&mut buf[len..]).expect("read");
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(head)) = resp.parse(&buf[..len]) {
                assert_eq!(
                    resp.code,
                    Some(200),
                    "{}",
                    String::from_utf8_lossy(&buf[..len])
                );
                let body: usize = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                    .unwrap();
                if len >= head + body {
                    break head + body;
                }
            }
        };
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..REQUESTS {
            socket.write_all(request.as_bytes()).expect("write");
            socket.read_exact(&mut buf[..total]).expect("read");
        }
        let after = ALLOCATIONS.load(Ordering::Relaxed);
        assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"));
        (after - before) as f64 / REQUESTS as f64
    })
    .join()
    .expect("client thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_per_object_get() {
    // From the object cache (warmed by the router's read path), then from the volume file with
    // sendfile(2) on a node without a cache.
    let cached = Node::start(fastpath::Config::default(), 16 << 20).await;
    let (cached_presigned, cached_bearer) = measure(&cached, true).await;
    let uncached = Node::start(fastpath::Config::default(), 0).await;
    let (file_presigned, file_bearer) = measure(&uncached, false).await;
    eprintln!(
        "allocations per object GET on the fast path: from the cache {cached_presigned:.2} \
         (presigned URL) / {cached_bearer:.2} (bearer token); from the volume file \
         {file_presigned:.2} / {file_bearer:.2}"
    );
    // Measured 1.0 from the cache with a presigned URL: the object record cloned out of the
    // cache (its content type). The bearer path adds the token's JSON claims and the
    // extractor's header copy; the volume-file path adds the blocking-pool task of the index
    // lookup and the record read from RocksDB.
    assert!(
        cached_presigned < 1.5,
        "{cached_presigned} allocations per cached presigned GET"
    );
}

/// Allocations per GET of one object, with a presigned URL and with a bearer token.
async fn measure(node: &Node, warm: bool) -> (f64, f64) {
    let sha = node.upload(&png(200, 200, 11)).await;
    let key = node.state.cluster.directory().key().expect("key");
    let query = token::presign(&key, &sha, token::now_ms() + 3_600_000);
    if warm {
        let auth = format!("Bearer {}", node.admin);
        let path = format!("/objects/{sha}");
        let read = request(node.slow, "GET", &path, &[("Authorization", &auth)]).await;
        assert_eq!(read.status, 200);
    }
    let addr = node.fast;
    let presigned = format!("GET /objects/{sha}?{query} HTTP/1.1\r\nHost: t\r\n\r\n");
    let bearer = format!(
        "GET /objects/{sha} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\r\n",
        node.admin
    );
    let presigned = tokio::task::spawn_blocking(move || allocations_per_request(addr, presigned))
        .await
        .unwrap();
    let bearer = tokio::task::spawn_blocking(move || allocations_per_request(addr, bearer))
        .await
        .unwrap();
    (presigned, bearer)
}

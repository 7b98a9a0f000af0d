//! A loopback HTTP/1.1 server for tests: canned replies, bounded in requests
//! and time, so it stops by itself even when a test fails.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One canned HTTP response.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// The Content-Length sent; larger than the body simulates a cut transfer.
    pub content_length: usize,
}

impl Reply {
    pub fn ok(body: Vec<u8>) -> Reply {
        let content_length = body.len();
        Reply { status: 200, body, content_length }
    }
}

/// A loopback HTTP/1.1 server answering from a fixed table (404 otherwise).
/// It stops by itself after `max_requests` requests or 20 seconds, or when
/// `finish` is called.
pub struct Server {
    pub base: String,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<String>>,
}

impl Server {
    pub fn start(routes: HashMap<String, Reply>, max_requests: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut requested = Vec::new();
            while requested.len() < max_requests && Instant::now() < deadline && !stop_flag.load(Ordering::SeqCst) {
                let stream = match listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(_) => break,
                };
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut reader = BufReader::new(stream);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                // Skip the headers; requests carry no body.
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut stream = reader.into_inner();
                let (status, body, length) = match routes.get(&path) {
                    Some(reply) => (reply.status, &reply.body[..], reply.content_length),
                    None => (404, &b"not found"[..], 9),
                };
                let head = format!("HTTP/1.1 {status} X\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n");
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body);
                requested.push(path);
            }
            requested
        });
        Server { base, stop, thread }
    }

    /// Stops the server and returns the paths requested, in order.
    pub fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

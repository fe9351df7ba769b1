//! A tiny HTTP service using only the standard library.
//!
//! `GET /` answers a greeting, `GET /healthz` answers `ok`; anything else is a 404.
//! The port comes from `PORT` (default 8080). `app --check` prints `ok` and exits, so a
//! build or a test can prove the binary runs without opening a socket.

use std::env;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

fn response(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        status,
        body.len(),
        body
    )
}

fn route(request_line: &str) -> String {
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    match (method, path) {
        ("GET", "/") => response("200 OK", "hello from a forklift-built image\n"),
        ("GET", "/healthz") => response("200 OK", "ok\n"),
        ("GET", _) => response("404 Not Found", "not found\n"),
        _ => response("405 Method Not Allowed", "method not allowed\n"),
    }
}

fn handle(stream: TcpStream) {
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Drain the headers so the client sees a clean close.
    let mut header = String::new();
    while reader.read_line(&mut header).map(|n| n > 2).unwrap_or(false) {
        header.clear();
    }
    let mut stream = stream;
    let _ = stream.write_all(route(request_line.trim_end()).as_bytes());
}

fn main() {
    if env::args().nth(1).as_deref() == Some("--check") {
        println!("ok");
        return;
    }
    let port = env::var("PORT").unwrap_or_else(|_| "8080".to_string());
    let address = format!("0.0.0.0:{}", port);
    let listener = match TcpListener::bind(&address) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("cannot listen on {}: {}", address, err);
            std::process::exit(1);
        }
    };
    println!("listening on {}", address);
    for stream in listener.incoming().flatten() {
        thread::spawn(move || handle(stream));
    }
}

#[cfg(test)]
mod tests {
    use super::route;

    #[test]
    fn routes() {
        assert!(route("GET / HTTP/1.1").starts_with("HTTP/1.1 200 OK"));
        assert!(route("GET /healthz HTTP/1.1").ends_with("ok\n"));
        assert!(route("GET /nope HTTP/1.1").starts_with("HTTP/1.1 404"));
        assert!(route("POST / HTTP/1.1").starts_with("HTTP/1.1 405"));
    }
}

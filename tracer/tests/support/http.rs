//! A real HTTP/1.1 server and client on std sockets (requests and responses parsed by
//! httparse), as small as the seed's stories need: keep-alive with an idle timeout on
//! the server, like Node's default, request bodies read whole before the answer, and a
//! client that reuses its connection and can pipeline.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    thread,
    time::Duration,
};

#[derive(Clone, Copy, Debug)]
pub struct ServerConfig {
    /// A kept-alive connection idle this long is closed by the server.
    pub idle_timeout: Duration,
    /// How long each response takes (a slow handler).
    pub response_delay: Duration,
    /// Print `request` on stdout as each request is read (for a parent process to wait on).
    pub announce_requests: bool,
}

/// Reads until `buffer` holds a complete head; returns the head's length, or `None` at EOF
/// before any byte.
fn read_head<T>(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> Option<T>,
) -> io::Result<Option<T>> {
    loop {
        if let Some(len) = parse(buffer) {
            return Ok(Some(len));
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk)? {
            0 if buffer.is_empty() => return Ok(None),
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads until `buffer` holds `len` bytes.
fn read_to(stream: &mut TcpStream, buffer: &mut Vec<u8>, len: usize) -> io::Result<()> {
    while buffer.len() < len {
        let mut chunk = [0u8; 64 * 1024];
        match stream.read(&mut chunk)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(())
}

/// The `Content-Length` of a message with `headers` (0 without one).
fn content_length(headers: &[httparse::Header]) -> usize {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
        .unwrap_or(0)
}

/// The length of a request's head and of its body, once the head is complete.
fn request_head(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => Some((len, content_length(request.headers))),
        _ => None,
    }
}

/// Serves one connection until the client closes it or it idles past the timeout.
fn serve_connection(mut stream: TcpStream, config: ServerConfig) -> io::Result<()> {
    stream.set_read_timeout(Some(config.idle_timeout))?;
    let mut buffer = Vec::new();
    loop {
        let (head, body) = match read_head(&mut stream, &mut buffer, request_head) {
            Ok(Some(lengths)) => lengths,
            Ok(None) => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        read_to(&mut stream, &mut buffer, head + body)?;
        buffer.drain(..head + body);
        if config.announce_requests {
            let mut stdout = io::stdout().lock();
            writeln!(stdout, "request")?;
            stdout.flush()?;
        }
        thread::sleep(config.response_delay); // the slow handler being modelled
        let body = b"hello from tracer's test server\n";
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
            body.len()
        )?;
        stream.write_all(body)?;
    }
}

/// Accepts and serves connections on `listener` for as long as the process lives.
pub fn serve(listener: TcpListener, config: ServerConfig) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { return };
        thread::spawn(move || serve_connection(stream, config));
    }
}

/// Starts a server on `127.0.0.1:port` in this process.
pub fn start_server(port: u16, config: ServerConfig) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || serve(listener, config));
    addr
}

/// One client connection, reused for every request.
pub struct HttpClient {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

/// The length of a response's head and of its body, once the head is complete.
fn response_head(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => {
            assert_eq!(response.code, Some(200));
            Some((len, content_length(response.headers)))
        }
        _ => None,
    }
}

/// A request for `path`: a GET, or a POST of `body`.
pub fn request(path: &str, body: &[u8]) -> Vec<u8> {
    let head = "HTTP/1.1\r\nHost: tracer-test\r\nConnection: keep-alive\r\n";
    let mut request = if body.is_empty() {
        format!("GET {path} {head}\r\n")
    } else {
        format!("POST {path} {head}Content-Length: {}\r\n\r\n", body.len())
    }
    .into_bytes();
    request.extend_from_slice(body);
    request
}

impl HttpClient {
    pub fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).unwrap(),
            buffer: Vec::new(),
        }
    }

    /// GET `path`; returns the response body.
    pub fn get(&mut self, path: &str) -> io::Result<String> {
        self.stream.write_all(&request(path, b""))?;
        self.response()
    }

    /// Reads the next response; returns its body.
    pub fn response(&mut self) -> io::Result<String> {
        let (head, length) = read_head(&mut self.stream, &mut self.buffer, response_head)?
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        read_to(&mut self.stream, &mut self.buffer, head + length)?;
        let body = String::from_utf8_lossy(&self.buffer[head..head + length]).into_owned();
        self.buffer.drain(..head + length);
        Ok(body)
    }
}

/// One HTTP/1.0 request to a busybox server on loopback `port` whose page says `pong`
/// (the containers' and pods' servers): the client's end, once answered.
pub fn pong(port: u16) -> Option<SocketAddr> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer
        .contains("pong")
        .then(|| stream.local_addr().unwrap())
}

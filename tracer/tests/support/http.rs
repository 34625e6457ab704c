//! A real HTTP/1.1 server and client on std sockets (requests and responses parsed by
//! httparse), as small as the seed's stories need: keep-alive with an idle timeout on
//! the server, like Node's default, and a client that reuses its connection.

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
fn read_head(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> Option<usize>,
) -> io::Result<Option<usize>> {
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

fn request_head(bytes: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    match httparse::Request::new(&mut headers).parse(bytes) {
        Ok(httparse::Status::Complete(len)) => Some(len),
        _ => None,
    }
}

/// Serves one connection until the client closes it or it idles past the timeout.
fn serve_connection(mut stream: TcpStream, config: ServerConfig) -> io::Result<()> {
    stream.set_read_timeout(Some(config.idle_timeout))?;
    let mut buffer = Vec::new();
    loop {
        let head = match read_head(&mut stream, &mut buffer, request_head) {
            Ok(Some(len)) => len,
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
        buffer.drain(..head);
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

fn response_head(bytes: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    match httparse::Response::new(&mut headers).parse(bytes) {
        Ok(httparse::Status::Complete(len)) => Some(len),
        _ => None,
    }
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
        write!(
            self.stream,
            "GET {path} HTTP/1.1\r\nHost: tracer-test\r\nConnection: keep-alive\r\n\r\n"
        )?;
        let head = read_head(&mut self.stream, &mut self.buffer, response_head)?
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        response
            .parse(&self.buffer[..head])
            .map_err(io::Error::other)?;
        assert_eq!(response.code, Some(200));
        let length: usize = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
            .expect("a Content-Length");
        while self.buffer.len() < head + length {
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&self.buffer[head..head + length]).into_owned();
        self.buffer.drain(..head + length);
        Ok(body)
    }
}

//! One JSON object per line, written straight into the output buffer: the sink's keys are
//! literals that need no escaping, numbers and addresses are formatted without the `fmt`
//! machinery, timestamps reuse the date and time of day of the second before, and only
//! text from outside (process names, reasons) goes through serde_json's escaping.
//!
//! serde's derive with flattened details cost about 1.6 µs a line, most of the daemon's
//! time at full connection churn (issue 11); this writes the same lines several times
//! faster (see docs/performance.md).

use std::{
    io::Write as _,
    net::{IpAddr, SocketAddr},
    time::{Duration, SystemTime},
};

/// Formats `SystemTime`s as RFC 3339 UTC with nanoseconds, reusing the formatted date
/// and time of day while the second stays the same.
#[derive(Default)]
pub struct Timestamps {
    second: u64,
    /// `2026-11-26T03:04:05.`, for `second`.
    prefix: Vec<u8>,
}

impl Timestamps {
    /// Appends `time` to `out`, e.g. `2026-11-26T03:04:05.123456789Z`.
    pub fn write(&mut self, out: &mut Vec<u8>, time: SystemTime) {
        let since = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        if self.prefix.is_empty() || since.as_secs() != self.second {
            self.second = since.as_secs();
            let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(self.second);
            self.prefix.clear();
            // `2026-11-26T03:04:05Z` without its `Z`, then the decimal point.
            let text = humantime::format_rfc3339_seconds(whole).to_string();
            self.prefix
                .extend_from_slice(&text.as_bytes()[..text.len() - 1]);
            self.prefix.push(b'.');
        }
        out.extend_from_slice(&self.prefix);
        write_padded(out, since.subsec_nanos(), 9);
        out.push(b'Z');
    }
}

/// `value` in `width` decimal digits, zero-padded.
fn write_padded(out: &mut Vec<u8>, mut value: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for digit in out[start..].iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// An address as `1.2.3.4:80` or `[::1]:80`.
fn write_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    let mut integer = itoa::Buffer::new();
    match addr.ip() {
        IpAddr::V4(ip) => {
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(integer.format(octet).as_bytes());
            }
        }
        IpAddr::V6(ip) => {
            let _ = write!(out, "[{ip}]");
        }
    }
    out.push(b':');
    out.extend_from_slice(integer.format(addr.port()).as_bytes());
}

/// A JSON object being written to `out`.
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    /// Starts an object at the end of `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    /// Ends the object (and the line, when it is one).
    pub fn end(self) {
        self.out.push(b'}');
    }

    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    /// Text the sink names itself (event names, states): no escaping needed.
    pub fn name(&mut self, key: &str, value: &str) -> &mut Self {
        let out = self.key(key);
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
        self
    }

    pub fn optional_bool(&mut self, key: &str, value: Option<bool>) -> &mut Self {
        match value {
            Some(value) => self.bool(key, value),
            None => self.null(key),
        }
    }

    pub fn optional_name(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.name(key, value),
            None => self.null(key),
        }
    }

    /// Text from outside (process names, reasons), escaped.
    pub fn text(&mut self, key: &str, value: &str) -> &mut Self {
        let out = self.key(key);
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(out, value);
        self
    }

    pub fn optional_text(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.text(key, value),
            None => self.null(key),
        }
    }

    pub fn null(&mut self, key: &str) -> &mut Self {
        self.key(key).extend_from_slice(b"null");
        self
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.key(key).extend_from_slice(text);
        self
    }

    pub fn number(&mut self, key: &str, value: impl itoa::Integer) -> &mut Self {
        let mut buffer = itoa::Buffer::new();
        self.key(key)
            .extend_from_slice(buffer.format(value).as_bytes());
        self
    }

    pub fn optional_number(&mut self, key: &str, value: Option<impl itoa::Integer>) -> &mut Self {
        match value {
            Some(value) => self.number(key, value),
            None => self.null(key),
        }
    }

    pub fn addr(&mut self, key: &str, addr: SocketAddr) -> &mut Self {
        let out = self.key(key);
        out.push(b'"');
        write_addr(out, addr);
        out.push(b'"');
        self
    }

    /// A kernel address as `0xffff888102e14a00`.
    pub fn hex(&mut self, key: &str, value: u64) -> &mut Self {
        let out = self.key(key);
        let _ = write!(out, "\"{value:#018x}\"");
        self
    }

    pub fn time(&mut self, key: &str, timestamps: &mut Timestamps, time: SystemTime) -> &mut Self {
        let out = self.key(key);
        out.push(b'"');
        timestamps.write(out, time);
        out.push(b'"');
        self
    }

    /// A nested object, written by `fill`.
    pub fn object(&mut self, key: &str, fill: impl FnOnce(&mut Object<'_>)) -> &mut Self {
        let out = self.key(key);
        let mut inner = Object::new(out);
        fill(&mut inner);
        inner.end();
        self
    }

    /// A nested object written by `fill` from `value`, or `null` without one.
    pub fn optional_object<T>(
        &mut self,
        key: &str,
        value: Option<T>,
        fill: impl FnOnce(&mut Object<'_>, T),
    ) -> &mut Self {
        match value {
            Some(value) => self.object(key, |o| fill(o, value)),
            None => self.null(key),
        }
    }

    /// An array of names the sink spells itself (no escaping needed).
    pub fn names<'n>(&mut self, key: &str, names: impl IntoIterator<Item = &'n str>) -> &mut Self {
        let out = self.key(key);
        out.push(b'[');
        for (i, name) in names.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.push(b'"');
        }
        out.push(b']');
        self
    }

    /// An array of `items`, each written by `fill` into an object.
    pub fn objects<T>(
        &mut self,
        key: &str,
        items: impl IntoIterator<Item = T>,
        mut fill: impl FnMut(&mut Object<'_>, T),
    ) -> &mut Self {
        let out = self.key(key);
        out.push(b'[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let mut inner = Object::new(out);
            fill(&mut inner, item);
            inner.end();
        }
        out.push(b']');
        self
    }
}

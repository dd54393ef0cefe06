//! Response heads, written into a buffer each connection reuses (no allocation per response once
//! it has grown to the largest head), with header names in lowercase as hyper writes them.

use std::cell::Cell;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;

/// A response head under construction.
#[derive(Default)]
pub struct Head {
    buf: Vec<u8>,
}

impl Head {
    /// Starts a new head with its status line. Responses are HTTP/1.1, also to 1.0 clients
    /// (RFC 9112 §2.5: the server's own version, with the major version of the request).
    pub fn start(&mut self, status: StatusCode) -> &mut Head {
        self.buf.clear();
        let reason = status.canonical_reason().unwrap_or("");
        let _ = write!(self.buf, "HTTP/1.1 {} {reason}\r\n", status.as_u16());
        self
    }

    pub fn header(&mut self, name: &str, value: &[u8]) -> &mut Head {
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b": ");
        self.buf.extend_from_slice(value);
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    pub fn number(&mut self, name: &str, value: u64) -> &mut Head {
        let _ = write!(self.buf, "{name}: {value}\r\n");
        self
    }

    /// `Content-Range: bytes a-b/size` (a 206) or `bytes */size` (a 416, `part` is `None`).
    pub fn content_range(&mut self, part: Option<(u64, u64)>, size: u64) -> &mut Head {
        let _ = match part {
            Some((offset, length)) => write!(
                self.buf,
                "content-range: bytes {offset}-{}/{size}\r\n",
                offset + length - 1
            ),
            None => write!(self.buf, "content-range: bytes */{size}\r\n"),
        };
        self
    }

    /// Ends the head: the security headers the router adds to every response
    /// (`crate::security_headers`; the content security policy is the caller's), `Connection`
    /// when it is not implied by the version, `Date`, blank line.
    pub fn finish(&mut self, keep_alive: bool, http10: bool) -> &[u8] {
        self.header("x-content-type-options", b"nosniff")
            .header("x-frame-options", b"DENY")
            .header("referrer-policy", b"no-referrer");
        if !keep_alive {
            self.header("connection", b"close");
        } else if http10 {
            self.header("connection", b"keep-alive");
        }
        let date = http_date();
        self.header("date", &date);
        self.buf.extend_from_slice(b"\r\n");
        &self.buf
    }
}

thread_local! {
    /// The last formatted `Date` and its second: formatting happens once a second per thread.
    static DATE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
}

/// The current time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), which RFC 9110
/// requires in responses from a server with a clock.
fn http_date() -> [u8; 29] {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    DATE.with(|cell| {
        let (second, text) = cell.get();
        if second == now {
            return text;
        }
        let text = format_date(now);
        cell.set((now, text));
        text
    })
}

fn format_date(secs: u64) -> [u8; 29] {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let mut out = [0u8; 29];
    let _ = write!(
        &mut out[..],
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    out
}

/// Year, month (1-12) and day of a day count since 1970-01-01 (Howard Hinnant's algorithm for
/// the proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_imf_fixdates() {
        assert_eq!(&format_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&format_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&format_date(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(
            &format_date(4_133_980_799),
            b"Fri, 31 Dec 2100 23:59:59 GMT"
        );
    }

    #[test]
    fn heads_carry_status_headers_connection_and_date() {
        let mut head = Head::default();
        head.start(StatusCode::PARTIAL_CONTENT)
            .number("content-length", 10)
            .content_range(Some((10, 10)), 100);
        let text = String::from_utf8(head.finish(true, true).to_vec()).unwrap();
        assert!(text.starts_with(
            "HTTP/1.1 206 Partial Content\r\ncontent-length: 10\r\n\
             content-range: bytes 10-19/100\r\nx-content-type-options: nosniff\r\n\
             x-frame-options: DENY\r\nreferrer-policy: no-referrer\r\n\
             connection: keep-alive\r\ndate: "
        ));
        assert!(text.ends_with(" GMT\r\n\r\n"));
        head.start(StatusCode::RANGE_NOT_SATISFIABLE)
            .content_range(None, 100);
        let text = String::from_utf8(head.finish(false, false).to_vec()).unwrap();
        assert!(text.contains("content-range: bytes */100\r\nx-content-type-options: nosniff\r\n"));
        assert!(text.contains("referrer-policy: no-referrer\r\nconnection: close\r\n"));
    }
}

//! One request head, parsed with `httparse` straight from the connection's buffer, and the
//! decision whether the fast path answers it or hyper does.

use httparse::Status;
use tessera_raft::storage::Sha256;

/// Headers parsed per request, on the stack. A request with more is handed to hyper (or, for
/// an object request, refused with 431).
const MAX_HEADERS: usize = 64;

const OBJECTS: &str = "/objects/";

/// What the bytes at the start of a connection's buffer are.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// The head is not complete yet: read more.
    Partial,
    /// A `GET`/`HEAD /objects/<sha>` the fast path answers.
    Object(ObjectRequest<'a>),
    /// Any other request: hyper and the router get it, with every byte read so far.
    Other,
    /// Not an HTTP/1.x request: 400, and the connection is closed.
    Malformed,
    /// An object request whose head is over the limit: 431, and the connection is closed.
    TooLarge,
}

/// A `GET`/`HEAD /objects/<sha>` without a body, with the headers its answer depends on (raw
/// values, borrowed from the read buffer; the first of repeated headers, as `HeaderMap::get`).
#[derive(Debug, PartialEq, Eq)]
pub struct ObjectRequest<'a> {
    /// Bytes of the buffer this request's head takes; the next request starts there.
    pub len: usize,
    pub head: bool,
    pub sha: Sha256,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    pub keep_alive: bool,
    /// An HTTP/1.0 request (keep-alive must then be confirmed in the response).
    pub http10: bool,
    pub range: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    pub authorization: Option<&'a [u8]>,
    pub cookie: Option<&'a [u8]>,
}

/// Parses the request at the start of `buf`. `limit` bounds the head of an object request.
pub fn parse(buf: &[u8], limit: usize) -> Parsed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let status = req.parse(buf);
    let object_path = req.path.is_some_and(|p| p.starts_with(OBJECTS));
    match status {
        Ok(Status::Complete(len)) if len > limit && object_path => Parsed::TooLarge,
        Ok(Status::Complete(len)) => classify(&req, len),
        Ok(Status::Partial) if buf.len() <= limit => Parsed::Partial,
        // Over the limit and still incomplete: other routes are hyper's to judge (its own
        // limits apply); an object request, or a request line this long, is refused.
        Ok(Status::Partial) if req.path.is_some() && !object_path => Parsed::Other,
        Ok(Status::Partial) => Parsed::TooLarge,
        Err(httparse::Error::TooManyHeaders) if object_path => Parsed::TooLarge,
        Err(httparse::Error::TooManyHeaders) => Parsed::Other,
        Err(_) => Parsed::Malformed,
    }
}

fn classify<'a>(req: &httparse::Request<'_, 'a>, len: usize) -> Parsed<'a> {
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Malformed;
    };
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Parsed::Other,
    };
    let Some((sha, query)) = object_path(path) else {
        return Parsed::Other;
    };
    // Thumbnails and previews may need generating: the router's handler does that.
    if crate::objects::size_param(query).is_some() {
        return Parsed::Other;
    }
    let mut out = ObjectRequest {
        len,
        head,
        sha,
        query,
        keep_alive: version == 1,
        http10: version == 0,
        range: None,
        if_none_match: None,
        authorization: None,
        cookie: None,
    };
    let (mut close, mut keep_alive) = (false, false);
    for h in req.headers.iter() {
        let name = h.name;
        let first = |slot: &mut Option<&'a [u8]>| {
            slot.get_or_insert(h.value);
        };
        if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("range") {
            first(&mut out.range);
        } else if name.eq_ignore_ascii_case("if-none-match") {
            first(&mut out.if_none_match);
        } else if name.eq_ignore_ascii_case("authorization") {
            first(&mut out.authorization);
        } else if name.eq_ignore_ascii_case("cookie") {
            // Several Cookie headers are joined by the slow path's cookie reader; rare enough
            // to leave to it.
            if out.cookie.replace(h.value).is_some() {
                return Parsed::Other;
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            // A body (or a malformed length) is for hyper to frame.
            if h.value.trim_ascii() != b"0" {
                return Parsed::Other;
            }
        } else if ["transfer-encoding", "expect", "upgrade"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            return Parsed::Other;
        }
    }
    out.keep_alive = !close && (out.keep_alive || keep_alive);
    Parsed::Object(out)
}

/// The object named by a path `/objects/<64 hex>[?query]`. Anything else (a malformed hash, a
/// percent-encoded one, a trailing slash) goes to the router, which answers it.
fn object_path(path: &str) -> Option<(Sha256, Option<&str>)> {
    let rest = path.strip_prefix(OBJECTS)?;
    let (hash, query) = match rest.split_once('?') {
        Some((hash, query)) => (hash, Some(query)),
        None => (rest, None),
    };
    Some((Sha256::parse_hex(hash)?, query))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

    fn object(parsed: Parsed<'_>) -> ObjectRequest<'_> {
        match parsed {
            Parsed::Object(o) => o,
            other => panic!("expected an object request, got {other:?}"),
        }
    }

    #[test]
    fn reads_an_object_request_and_its_headers() {
        let text = format!(
            "GET /objects/{SHA}?exp=5&sig=ab HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\
             Range: bytes=5-6\r\nIf-None-Match: \"x\"\r\nAuthorization: Bearer t\r\n\
             Cookie: tessera_token=c\r\nContent-Length: 0\r\n\r\n"
        );
        let req = object(parse(text.as_bytes(), 16 << 10));
        assert_eq!(req.len, text.len());
        assert!(!req.head && req.keep_alive && !req.http10);
        assert_eq!(req.sha, Sha256::parse_hex(SHA).unwrap());
        assert_eq!(req.query, Some("exp=5&sig=ab"));
        assert_eq!(req.range, Some(&b"bytes=0-9"[..]));
        assert_eq!(req.if_none_match, Some(&b"\"x\""[..]));
        assert_eq!(req.authorization, Some(&b"Bearer t"[..]));
        assert_eq!(req.cookie, Some(&b"tessera_token=c"[..]));
    }

    #[test]
    fn thumbnails_and_previews_go_to_the_router() {
        for query in ["size=thumb", "exp=5&sig=ab&size=preview", "size=huge"] {
            let text = format!("GET /objects/{SHA}?{query} HTTP/1.1\r\n\r\n");
            assert_eq!(parse(text.as_bytes(), 1 << 10), Parsed::Other, "{query}");
        }
        let other = format!("GET /objects/{SHA}?sizes=1 HTTP/1.1\r\n\r\n");
        assert_eq!(
            object(parse(other.as_bytes(), 1 << 10)).query,
            Some("sizes=1")
        );
    }

    #[test]
    fn pipelined_requests_parse_one_after_another() {
        let one = format!("HEAD /objects/{SHA} HTTP/1.1\r\n\r\n");
        let two = format!("GET /objects/{SHA} HTTP/1.1\r\nConnection: close\r\n\r\n");
        let three = "POST /api/v1/objects HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        let all = format!("{one}{two}{three}");
        let first = object(parse(all.as_bytes(), 16 << 10));
        assert!(first.head && first.keep_alive);
        let rest = &all.as_bytes()[first.len..];
        let second = object(parse(rest, 16 << 10));
        assert!(!second.head && !second.keep_alive);
        assert_eq!(parse(&rest[second.len..], 16 << 10), Parsed::Other);
    }

    #[test]
    fn http10_keeps_alive_only_when_asked() {
        let plain = format!("GET /objects/{SHA} HTTP/1.0\r\n\r\n");
        let req = object(parse(plain.as_bytes(), 1 << 10));
        assert!(req.http10 && !req.keep_alive);
        let asked = format!("GET /objects/{SHA} HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(object(parse(asked.as_bytes(), 1 << 10)).keep_alive);
        let both = format!("GET /objects/{SHA} HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n");
        assert!(!object(parse(both.as_bytes(), 1 << 10)).keep_alive);
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        let full = format!("GET /objects/{SHA} HTTP/1.1\r\nHost: x\r\n\r\n");
        for cut in [1, 10, 30, full.len() - 1] {
            assert_eq!(
                parse(&full.as_bytes()[..cut], 1 << 10),
                Parsed::Partial,
                "{cut}"
            );
        }
    }

    #[test]
    fn everything_else_goes_to_the_router() {
        let cases = [
            "POST /api/v1/objects HTTP/1.1\r\n\r\n".to_string(),
            "GET /healthz HTTP/1.1\r\n\r\n".into(),
            "GET /objects/not-a-hash HTTP/1.1\r\n\r\n".into(),
            format!("GET /objects/{SHA}/ HTTP/1.1\r\n\r\n"),
            format!("DELETE /objects/{SHA} HTTP/1.1\r\n\r\n"),
            format!("GET /objects/{SHA} HTTP/1.1\r\nContent-Length: 4\r\n\r\n"),
            format!("GET /objects/{SHA} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            format!("GET /objects/{SHA} HTTP/1.1\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n"),
        ];
        for case in cases {
            assert_eq!(parse(case.as_bytes(), 1 << 10), Parsed::Other, "{case}");
        }
    }

    #[test]
    fn malformed_requests_are_refused() {
        for case in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET /objects/x HTTP/2.0\r\n\r\n",
            b"GET /objects/x HTTP/1.1\r\nBad Header\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            assert_eq!(parse(case, 1 << 10), Parsed::Malformed, "{case:?}");
        }
    }

    #[test]
    fn oversized_object_heads_are_refused_and_others_handed_on() {
        let big = "x".repeat(2000);
        let object = format!("GET /objects/{SHA} HTTP/1.1\r\nX-Pad: {big}\r\n\r\n");
        assert_eq!(parse(object.as_bytes(), 1 << 10), Parsed::TooLarge);
        // Still incomplete past the limit.
        assert_eq!(parse(&object.as_bytes()[..1500], 1 << 10), Parsed::TooLarge);
        let other = format!("GET /api/v1/me HTTP/1.1\r\nX-Pad: {big}");
        assert_eq!(parse(other.as_bytes(), 1 << 10), Parsed::Other);
        let endless_line = format!("GET /{big}");
        assert_eq!(parse(endless_line.as_bytes(), 1 << 10), Parsed::TooLarge);
        let many: String = (0..70).map(|i| format!("X-{i}: 1\r\n")).collect();
        let crowded = format!("GET /objects/{SHA} HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(crowded.as_bytes(), 16 << 10), Parsed::TooLarge);
        let crowded_other = format!("GET /healthz HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(crowded_other.as_bytes(), 16 << 10), Parsed::Other);
    }
}

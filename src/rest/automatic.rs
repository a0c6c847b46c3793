//! Salesforce-shaped bodies for the answers hyper gives by itself. An HTTP/1.1 request
//! hyper cannot parse — a request line over its 64 KiB limit (414), a header block too
//! large or with too many headers (431), a malformed request line, header or
//! `Content-Length` (400) — never reaches the router: hyper writes a bare status line
//! with `content-length: 0` and closes. A REST client then gets no `errorCode` to act
//! on. `Reshaped` sits between hyper and the socket and replaces exactly that bare
//! answer with the same status and a JSON body in the bridge's shape:
//! `[{"message":…,"errorCode":…}]`.
//!
//! Only a write that is a complete response head, status 400, 414 or 431, whose only
//! headers are `content-length: 0`, `connection: close` and `date` is replaced: every answer of the router
//! has a `content-type` (and a body), and HTTP/2 writes frames, never status lines.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The socket (or TLS stream) hyper serves, with hyper's bare error answers reshaped.
pub struct Reshaped<S> {
    inner: S,
    /// The replacement answer, and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> Reshaped<S> {
    pub fn new(inner: S) -> Self {
        Reshaped { inner, pending: None }
    }
}

/// The replacement for `head` if it is one of hyper's bare error answers.
fn reshape(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let lines = text.strip_suffix("\r\n\r\n")?;
    let mut lines = lines.split("\r\n");
    let status_line = lines.next()?;
    let code = status_line.strip_prefix("HTTP/1.1 ").or_else(|| status_line.strip_prefix("HTTP/1.0 "))?;
    let (status, message, error_code) = match code.split(' ').next()? {
        "400" => (
            "400 Bad Request",
            "The request could not be read: its request line or a header (such as Content-Length) is malformed",
            "MALFORMED_REQUEST",
        ),
        "414" => ("414 URI Too Long", "The request's URI is longer than the server accepts", "URI_TOO_LONG"),
        "431" => (
            "431 Request Header Fields Too Large",
            "The request's headers are larger, or more numerous, than the server accepts",
            "REQUEST_HEADER_FIELDS_TOO_LARGE",
        ),
        _ => return None,
    };
    let mut date = None;
    for line in lines {
        let (name, value) = line.split_once(": ")?;
        match (name.to_ascii_lowercase().as_str(), value) {
            ("content-length", "0") | ("connection", "close") => {}
            ("date", value) => date = Some(value),
            _ => return None,
        }
    }
    let body = serde_json::json!([{ "message": message, "errorCode": error_code }]).to_string();
    let mut answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json;charset=UTF-8\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(date) = date {
        answer.push_str(&format!("date: {date}\r\n"));
    }
    answer.push_str("\r\n");
    answer.push_str(&body);
    Some(answer.into_bytes())
}

impl<S: AsyncWrite + Unpin> Reshaped<S> {
    /// Writes what is left of the replacement; ready when nothing is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Reshaped<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Reshaped<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if buf.starts_with(b"HTTP/1.")
            && buf.len() < 1024
            && let Some(answer) = reshape(buf)
        {
            self.pending = Some((answer, 0));
            // hyper's bytes are taken whole; the replacement goes out now or on flush.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    /// One buffer per write, so a response head is always seen whole.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bare_error_heads_are_reshaped_with_a_salesforce_body() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";
        let answer = String::from_utf8(reshape(bare).expect("reshaped")).unwrap();
        assert!(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{answer}");
        assert!(answer.contains("date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"), "{answer}");
        let body: serde_json::Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body[0]["errorCode"], "REQUEST_HEADER_FIELDS_TOO_LARGE");
        assert!(reshape(b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\n\r\n").is_some());
        assert!(reshape(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").is_some());
    }

    #[test]
    fn the_routers_own_answers_are_left_alone() {
        for head in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n[]"[..],
            b"HTTP/1.1 405 Method Not Allowed\r\nallow: GET\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n", // not a whole head
        ] {
            assert!(reshape(head).is_none(), "{}", String::from_utf8_lossy(head));
        }
    }
}

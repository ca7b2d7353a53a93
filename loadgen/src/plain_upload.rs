//! `plain-upload-server`: the "plain handler" that `upload` compares the real server with.
//! A minimal hyper/tokio server speaking the tus shape the load generator uses — `POST
//! /api/uploads` with `Upload-Length` (201 + relative `Location`), `HEAD` (offset and
//! length), `PATCH` at `Upload-Offset` (409 on a mismatch, 204 + the new offset), and `GET`
//! of an upload's bytes (at its `Location` or at `/api/files/{id}`) — that writes each PATCH
//! body to a file at its offset from a blocking thread fed by a small channel, and
//! fdatasyncs it at the end of the PATCH, as the real server does. Nothing else: no
//! authentication, no database, no hashing, no metadata, limits or checksum checks, state
//! in memory only. Downloads stream the file in 256 KiB chunks read by a blocking thread,
//! as the real server's do.

use std::collections::HashMap;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Bytes per chunk read for a download (the real server's figure).
const READ_CHUNK: usize = 256 * 1024;
/// Body chunks in flight between the socket and the writing thread.
const WRITE_QUEUE: usize = 16;

type Body = BoxBody<Bytes, io::Error>;

struct Upload {
    path: PathBuf,
    length: u64,
    /// The acknowledged offset; held for the whole of a PATCH, so PATCHes run one at a time.
    offset: tokio::sync::Mutex<u64>,
}

struct State {
    dir: PathBuf,
    uploads: Mutex<HashMap<String, Arc<Upload>>>,
}

impl State {
    fn get(&self, id: &str) -> Option<Arc<Upload>> {
        self.uploads.lock().ok()?.get(id).cloned()
    }
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn reply(status: StatusCode, headers: &[(&'static str, String)]) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert("tus-resumable", HeaderValue::from_static("1.0.0"));
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(*k, v);
        }
    }
    r
}

fn header_u64<B>(req: &Request<B>, name: &str) -> Option<u64> {
    req.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The upload id in `/api/uploads/{id}` or `/api/files/{id}`.
fn upload_id(path: &str) -> Option<&str> {
    let id = path
        .strip_prefix("/api/uploads/")
        .or_else(|| path.strip_prefix("/api/files/"))?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let result = match (req.method().clone(), path.as_str()) {
        (Method::POST, "/api/uploads") => create(&state, &req).await,
        (method, p) => match upload_id(p).and_then(|id| state.get(id)) {
            None => Ok(reply(StatusCode::NOT_FOUND, &[])),
            Some(upload) => match method {
                Method::HEAD => Ok(head(&upload).await),
                Method::PATCH => patch(&upload, req).await,
                Method::GET => download(&upload).await,
                _ => Ok(reply(StatusCode::METHOD_NOT_ALLOWED, &[])),
            },
        },
    };
    result.unwrap_or_else(|_| reply(StatusCode::INTERNAL_SERVER_ERROR, &[]))
}

async fn create(state: &State, req: &Request<Incoming>) -> io::Result<Response<Body>> {
    let Some(length) = header_u64(req, "upload-length") else {
        return Ok(reply(StatusCode::BAD_REQUEST, &[]));
    };
    let id = uuid::Uuid::new_v4().to_string();
    let path = state.dir.join(&id);
    let p = path.clone();
    tokio::task::spawn_blocking(move || std::fs::File::create(p))
        .await
        .map_err(io::Error::other)??;
    let upload = Arc::new(Upload {
        path,
        length,
        offset: tokio::sync::Mutex::new(0),
    });
    state
        .uploads
        .lock()
        .map_err(|_| io::Error::other("poisoned"))?
        .insert(id.clone(), upload);
    Ok(reply(
        StatusCode::CREATED,
        &[("location", format!("/api/uploads/{id}"))],
    ))
}

async fn head(upload: &Upload) -> Response<Body> {
    let offset = *upload.offset.lock().await;
    reply(
        StatusCode::OK,
        &[
            ("upload-offset", offset.to_string()),
            ("upload-length", upload.length.to_string()),
            ("cache-control", "no-store".into()),
        ],
    )
}

async fn patch(upload: &Upload, req: Request<Incoming>) -> io::Result<Response<Body>> {
    let mut offset = upload.offset.lock().await;
    if header_u64(&req, "upload-offset") != Some(*offset) {
        return Ok(reply(
            StatusCode::CONFLICT,
            &[("upload-offset", offset.to_string())],
        ));
    }
    let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let (path, start) = (upload.path.clone(), *offset);
    let writer = tokio::task::spawn_blocking(move || -> io::Result<u64> {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        let mut at = start;
        while let Some(chunk) = rx.blocking_recv() {
            file.write_all_at(&chunk, at)?;
            at += chunk.len() as u64;
        }
        file.sync_data()?;
        Ok(at)
    });
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        // A dropped connection keeps what arrived (the real server keeps whole records).
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            if tx.send(data).await.is_err() {
                break;
            }
        }
    }
    drop(tx);
    *offset = writer.await.map_err(io::Error::other)??;
    Ok(reply(
        StatusCode::NO_CONTENT,
        &[("upload-offset", offset.to_string())],
    ))
}

async fn download(upload: &Upload) -> io::Result<Response<Body>> {
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let path = upload.path.clone();
    let length = *upload.offset.lock().await;
    tokio::task::spawn_blocking(move || {
        let mut file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let mut left = length;
        while left > 0 {
            let mut buf = vec![0u8; READ_CHUNK.min(usize::try_from(left).unwrap_or(READ_CHUNK))];
            let chunk = match file.read(&mut buf) {
                Ok(0) => Err(io::Error::other("file shorter than its offset")),
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    Ok(Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            if tx.blocking_send(chunk).is_err() || failed {
                return;
            }
        }
    });
    let stream = futures_util::StreamExt::map(
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)),
        |chunk| chunk.map(Frame::data),
    );
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    let h = r.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert("content-length", HeaderValue::from(length));
    Ok(r)
}

/// Bind 127.0.0.1:`port` (0: any free port), print
/// `plain-upload-server listening on http://127.0.0.1:PORT` as the first stdout line, and
/// serve forever, keeping uploads as files in `dir`.
pub async fn run(port: u16, dir: &Path) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "plain-upload-server listening on http://{addr}")?;
        out.flush()?;
    }
    serve(listener, dir.to_path_buf()).await
}

/// Serve on `listener` until the process ends.
pub async fn serve(listener: TcpListener, dir: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&dir)?;
    let state = Arc::new(State {
        dir,
        uploads: Mutex::new(HashMap::new()),
    });
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_come_from_either_path() {
        assert_eq!(upload_id("/api/uploads/abc"), Some("abc"));
        assert_eq!(upload_id("/api/files/abc"), Some("abc"));
        assert_eq!(upload_id("/api/uploads/"), None);
        assert_eq!(upload_id("/api/uploads/a/b"), None);
        assert_eq!(upload_id("/other/abc"), None);
    }
}

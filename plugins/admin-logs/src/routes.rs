//! Owns the admin console's HTTP surface (`/api/admin/*`, docs/API-CONTRACT.md, last
//! section) and `POST /api/reports`: parse the request, append the audit entry, call the
//! [`AdminStore`], reply in the core's error shape `{"error":{"code","message"}}`.
//!
//! Invariants: every admin request is authenticated as an admin before anything else, and
//! its audit entry is committed before any data leaves; no answer carries envelope text,
//! keys or tokens (messages and files appear as fingerprints).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use securechat_plugin_api::admin::{
    AdminStore, AuditEntry, Caller, JobChange, LogQuery, StoreError,
};
use securechat_plugin_api::Routes;
use serde_json::{json, Map, Value};
use warp::http::header::{HeaderValue, CONTENT_DISPOSITION, CONTENT_TYPE};
use warp::http::{Method, StatusCode};
use warp::path::Tail;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::audit::{self, Verification};
use crate::csv;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;
const FAILED_JOBS_SHOWN: u32 = 100;
pub(crate) const MAX_REPORT_BODY: u64 = 256 * 1024;

/// What the routes share: the core's services and the export bound.
pub struct Console {
    pub store: Arc<dyn AdminStore>,
    pub csv_max_rows: u32,
}

/// An error answer in the core's shape.
#[derive(Debug)]
pub(crate) struct Fail {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Fail {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Fail {
        Fail {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad(message: impl Into<String>) -> Fail {
        Fail::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub(crate) fn not_found(what: &str) -> Fail {
        Fail::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub(crate) fn unauthorized() -> Fail {
        Fail::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing, expired or revoked credentials",
        )
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        match e {
            StoreError::UnknownUser(param) => Fail::bad(format!("{param}: no such user")),
            StoreError::Internal(_) => Fail::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal server error",
            ),
        }
    }
}

pub(crate) type Answer = Result<Response, Fail>;

pub(crate) fn json_reply(status: StatusCode, body: &Value) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

fn reply(answer: Answer) -> Response {
    answer.unwrap_or_else(|f| {
        json_reply(
            f.status,
            &json!({ "error": { "code": f.code, "message": f.message } }),
        )
    })
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first 8 bytes of BLAKE3 of `bytes`, as 16 hex characters.
pub fn fingerprint(bytes: &[u8]) -> String {
    hex(&blake3::hash(bytes).as_bytes()[..8])
}

/// The query string as name/value pairs.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Refuses a parameter not in `allowed`, or one given twice, naming it.
    fn only(&self, allowed: &[&str]) -> Result<(), Fail> {
        for (i, (k, _)) in self.0.iter().enumerate() {
            if !allowed.contains(&k.as_str()) {
                return Err(Fail::bad(format!("unknown query parameter {k:?}")));
            }
            if self.0[..i].iter().any(|(other, _)| other == k) {
                return Err(Fail::bad(format!("query parameter {k:?} given twice")));
            }
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn int(&self, name: &str) -> Result<Option<i64>, Fail> {
        self.get(name)
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| Fail::bad(format!("{name} must be a non-negative integer")))
            })
            .transpose()
    }

    /// A seq cursor (`next_cursor` of a previous page).
    fn cursor(&self) -> Result<Option<i64>, Fail> {
        self.int("cursor")
            .map_err(|_| Fail::bad("cursor is not one this server issued"))
    }

    fn limit(&self) -> Result<u32, Fail> {
        match self.int("limit")? {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=i64::from(MAX_LIMIT)).contains(&n) => Ok(n as u32),
            Some(_) => Err(Fail::bad(format!("limit must be 1 to {MAX_LIMIT}"))),
        }
    }

    /// The filters used, for the audit entry (the cursor is paging, not a filter).
    fn detail(&self) -> Value {
        let map: Map<String, Value> = self
            .0
            .iter()
            .filter(|(k, _)| k != "cursor")
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        Value::Object(map)
    }

    /// The message/file log filters; `paged` adds cursor and limit.
    fn log_query(&self, paged: bool, export_rows: u32) -> Result<LogQuery, Fail> {
        const FILTERS: &[&str] = &["sender", "recipient", "since", "until"];
        const PAGED: &[&str] = &["sender", "recipient", "since", "until", "cursor", "limit"];
        self.only(if paged { PAGED } else { FILTERS })?;
        Ok(LogQuery {
            sender: self.get("sender").map(str::to_owned),
            recipient: self.get("recipient").map(str::to_owned),
            since: self.int("since")?,
            until: self.int("until")?,
            before: if paged { self.cursor()? } else { None },
            limit: if paged { self.limit()? } else { export_rows },
        })
    }
}

/// A page of `rows` fetched with one row more than `limit`: the rows to show and the cursor
/// of the next page (the seq of the last row shown), if there is one.
fn page<T>(mut rows: Vec<T>, limit: u32, seq: impl Fn(&T) -> String) -> (Vec<T>, Value) {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        let next = rows.last().map(&seq);
        (rows, json!(next))
    } else {
        (rows, Value::Null)
    }
}

fn csv_reply(name: &str, body: String) -> Response {
    let mut r = Response::new(body.into());
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(CONTENT_DISPOSITION, v);
    }
    r
}

fn ok(body: Value) -> Answer {
    Ok(json_reply(StatusCode::OK, &body))
}

/// `Authorization` header, if any.
pub(crate) fn authorization(
) -> impl Filter<Extract = (Option<String>,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("authorization")
}

pub fn routes(console: Arc<Console>) -> Routes {
    let c = console.clone();
    let admin = warp::path!("api" / "admin" / ..)
        .and(warp::path::tail())
        .and(warp::method())
        .and(warp::query::<Vec<(String, String)>>())
        .and(authorization())
        .then(
            move |tail: Tail,
                  method: Method,
                  query: Vec<(String, String)>,
                  auth: Option<String>| {
                let c = c.clone();
                async move { reply(c.admin(tail.as_str(), &method, Params(query), auth).await) }
            },
        );
    let reports = warp::path!("api" / "reports")
        .and(warp::post())
        .and(authorization())
        .and(warp::body::content_length_limit(MAX_REPORT_BODY))
        .and(warp::body::bytes())
        .then(move |auth: Option<String>, body: bytes::Bytes| {
            let c = console.clone();
            async move { reply(c.report(auth, &body).await) }
        });
    admin.or(reports).unify().boxed()
}

impl Console {
    /// The caller if they are an admin: 401 `unauthorized`, 403 `admin_required` otherwise.
    async fn admin_caller(&self, auth: Option<&str>) -> Result<Caller, Fail> {
        match self.store.authenticate(auth).await {
            None => Err(Fail::unauthorized()),
            Some(c) if !c.is_admin => Err(Fail::new(
                StatusCode::FORBIDDEN,
                "admin_required",
                "this needs an admin",
            )),
            Some(c) => Ok(c),
        }
    }

    /// Appends the request's audit entry; nothing is answered unless it committed.
    async fn audit(
        &self,
        caller: &Caller,
        action: &str,
        target: Option<&str>,
        detail: Value,
    ) -> Result<(), Fail> {
        let entry = AuditEntry {
            seq: 0,
            at: now_ms(),
            actor: caller.username.clone(),
            action: action.into(),
            target: target.map(str::to_owned),
            detail: detail.to_string(),
            prev_hash: Vec::new(),
            hash: Vec::new(),
        };
        self.store.audit_append(entry, audit::entry_hash).await?;
        Ok(())
    }

    async fn admin(&self, tail: &str, method: &Method, p: Params, auth: Option<String>) -> Answer {
        let who = self.admin_caller(auth.as_deref()).await?;
        let parts: Vec<&str> = tail.split('/').collect();
        let get = *method == Method::GET;
        let post = *method == Method::POST;
        match parts.as_slice() {
            ["messages"] if get => self.messages(&who, &p).await,
            ["messages.csv"] if get => self.messages_csv(&who, &p).await,
            ["files"] if get => self.files(&who, &p).await,
            ["files.csv"] if get => self.files_csv(&who, &p).await,
            ["users"] if get => self.users(&who, &p).await,
            ["users", name, "disable"] if post => self.set_disabled(&who, &p, name, true).await,
            ["users", name, "enable"] if post => self.set_disabled(&who, &p, name, false).await,
            ["users", name, "revoke-sessions"] if post => self.revoke(&who, &p, name).await,
            ["jobs"] if get => self.jobs(&who, &p).await,
            ["jobs", id, "retry"] if post => self.job(&who, &p, id, false).await,
            ["jobs", id, "cancel"] if post => self.job(&who, &p, id, true).await,
            ["health"] if get => self.health(&who, &p).await,
            ["audit"] if get => self.audit_list(&who, &p).await,
            ["audit", "verify"] if get => self.audit_verify(&who, &p).await,
            ["reports"] if get => self.reports(&who, &p).await,
            _ => Err(Fail::not_found("route")),
        }
    }

    async fn messages(&self, who: &Caller, p: &Params) -> Answer {
        let q = p.log_query(true, 0)?;
        let limit = q.limit;
        self.audit(who, "messages.list", None, p.detail()).await?;
        let rows = self
            .store
            .messages(LogQuery {
                limit: limit + 1,
                ..q
            })
            .await?;
        let (rows, next) = page(rows, limit, |m| m.seq.to_string());
        let list: Vec<Value> = rows
            .iter()
            .map(|m| {
                json!({
                    "id": m.id, "sender": m.sender, "recipient": m.recipient,
                    "server_ts": m.server_ts, "size": m.size,
                    "fingerprint": fingerprint(m.envelope.as_bytes()), "state": m.state,
                })
            })
            .collect();
        ok(json!({ "messages": list, "next_cursor": next }))
    }

    async fn messages_csv(&self, who: &Caller, p: &Params) -> Answer {
        let q = p.log_query(false, self.csv_max_rows)?;
        self.audit(who, "messages.export", None, p.detail()).await?;
        let rows = self.store.messages(q).await?;
        let mut out = csv::line(&[
            "id",
            "sender",
            "recipient",
            "server_ts",
            "size",
            "fingerprint",
            "state",
        ]);
        for m in rows {
            out.push_str(&csv::line(&[
                m.id,
                m.sender,
                m.recipient,
                m.server_ts.to_string(),
                m.size.to_string(),
                fingerprint(m.envelope.as_bytes()),
                m.state.to_owned(),
            ]));
        }
        Ok(csv_reply("messages.csv", out))
    }

    async fn files(&self, who: &Caller, p: &Params) -> Answer {
        let q = p.log_query(true, 0)?;
        let limit = q.limit;
        self.audit(who, "files.list", None, p.detail()).await?;
        let rows = self
            .store
            .files(LogQuery {
                limit: limit + 1,
                ..q
            })
            .await?;
        let (rows, next) = page(rows, limit, |f| f.seq.to_string());
        let list: Vec<Value> = rows
            .iter()
            .map(|f| {
                json!({
                    "id": f.id, "sender": f.sender, "recipient": f.recipient,
                    "created_at": f.created_at, "size": f.size,
                    "fingerprint": f.blake3.as_deref().map(|h| hex(&h[..h.len().min(8)])),
                    "state": f.state,
                })
            })
            .collect();
        ok(json!({ "files": list, "next_cursor": next }))
    }

    async fn files_csv(&self, who: &Caller, p: &Params) -> Answer {
        let q = p.log_query(false, self.csv_max_rows)?;
        self.audit(who, "files.export", None, p.detail()).await?;
        let rows = self.store.files(q).await?;
        let mut out = csv::line(&[
            "id",
            "sender",
            "recipient",
            "created_at",
            "size",
            "fingerprint",
            "state",
        ]);
        for f in rows {
            let fp = f
                .blake3
                .as_deref()
                .map(|h| hex(&h[..h.len().min(8)]))
                .unwrap_or_default();
            out.push_str(&csv::line(&[
                f.id,
                f.sender,
                f.recipient,
                f.created_at.to_string(),
                f.size.to_string(),
                fp,
                f.state,
            ]));
        }
        Ok(csv_reply("files.csv", out))
    }

    async fn users(&self, who: &Caller, p: &Params) -> Answer {
        p.only(&["query", "cursor", "limit"])?;
        let limit = p.limit()?;
        let after = p.get("cursor").map(str::to_owned);
        if after.as_deref() == Some("") {
            return Err(Fail::bad("cursor is not one this server issued"));
        }
        let prefix = p.get("query").unwrap_or("").to_owned();
        self.audit(who, "users.list", None, p.detail()).await?;
        let rows = self.store.users(prefix, after, limit + 1).await?;
        let (rows, next) = page(rows, limit, |u| u.username.clone());
        ok(json!({ "users": rows, "next_cursor": next }))
    }

    async fn set_disabled(&self, who: &Caller, p: &Params, name: &str, disable: bool) -> Answer {
        p.only(&[])?;
        if disable && name == who.username {
            return Err(Fail::new(
                StatusCode::CONFLICT,
                "cannot_disable_self",
                "an admin cannot disable their own account",
            ));
        }
        let action = if disable {
            "user.disable"
        } else {
            "user.enable"
        };
        self.audit(who, action, Some(name), json!({})).await?;
        let n = self
            .store
            .set_disabled(name.to_owned(), disable)
            .await?
            .ok_or_else(|| Fail::not_found("user"))?;
        if disable {
            ok(json!({ "username": name, "disabled": true, "sessions_revoked": n }))
        } else {
            ok(json!({ "username": name, "disabled": false }))
        }
    }

    async fn revoke(&self, who: &Caller, p: &Params, name: &str) -> Answer {
        p.only(&[])?;
        self.audit(who, "user.revoke_sessions", Some(name), json!({}))
            .await?;
        let n = self
            .store
            .revoke_sessions(name.to_owned())
            .await?
            .ok_or_else(|| Fail::not_found("user"))?;
        ok(json!({ "username": name, "sessions_revoked": n }))
    }

    async fn jobs(&self, who: &Caller, p: &Params) -> Answer {
        p.only(&[])?;
        self.audit(who, "jobs.view", None, json!({})).await?;
        let queues = self.store.job_queues().await?;
        let failed = self.store.failed_jobs(FAILED_JOBS_SHOWN).await?;
        ok(json!({ "queues": queues, "failed": failed }))
    }

    async fn job(&self, who: &Caller, p: &Params, id: &str, cancel: bool) -> Answer {
        p.only(&[])?;
        let id: i64 = id
            .parse()
            .map_err(|_| Fail::bad("the job id must be an integer"))?;
        let action = if cancel { "job.cancel" } else { "job.retry" };
        self.audit(who, action, Some(&id.to_string()), json!({}))
            .await?;
        let change = if cancel {
            self.store.cancel_job(id).await?
        } else {
            self.store.retry_job(id).await?
        };
        match (change, cancel) {
            (JobChange::Done, true) => ok(json!({ "id": id, "state": "cancelled" })),
            (JobChange::Done, false) => ok(json!({ "id": id, "state": "available" })),
            (JobChange::NotFound, _) => Err(Fail::not_found("job")),
            (JobChange::WrongState, true) => Err(Fail::new(
                StatusCode::CONFLICT,
                "job_finished",
                "the job has already finished",
            )),
            (JobChange::WrongState, false) => Err(Fail::new(
                StatusCode::CONFLICT,
                "job_not_failed",
                "only a failed job can be retried",
            )),
        }
    }

    async fn health(&self, who: &Caller, p: &Params) -> Answer {
        p.only(&[])?;
        self.audit(who, "health.view", None, json!({})).await?;
        let h = self.store.health().await?;
        let mut body = json!({ "status": "ok" });
        if let (Value::Object(b), Ok(Value::Object(rest))) = (&mut body, serde_json::to_value(h)) {
            b.extend(rest);
        }
        ok(body)
    }

    async fn audit_list(&self, who: &Caller, p: &Params) -> Answer {
        p.only(&["cursor", "limit"])?;
        let (before, limit) = (p.cursor()?, p.limit()?);
        self.audit(who, "audit.view", None, p.detail()).await?;
        let rows = self.store.audit_list(before, limit + 1).await?;
        let (rows, next) = page(rows, limit, |e| e.seq.to_string());
        let list: Vec<Value> = rows
            .iter()
            .map(|e| {
                json!({
                    "seq": e.seq, "at": e.at, "actor": e.actor, "action": e.action,
                    "target": e.target, "detail": e.detail,
                    "prev_hash": hex(&e.prev_hash), "hash": hex(&e.hash),
                })
            })
            .collect();
        ok(json!({ "entries": list, "next_cursor": next }))
    }

    async fn audit_verify(&self, who: &Caller, p: &Params) -> Answer {
        p.only(&[])?;
        self.audit(who, "audit.verify", None, json!({})).await?;
        let all = self.store.audit_all().await?;
        ok(verification_json(&audit::verify(&all)))
    }

    async fn reports(&self, who: &Caller, p: &Params) -> Answer {
        p.only(&["cursor", "limit"])?;
        let (before, limit) = (p.cursor()?, p.limit()?);
        self.audit(who, "reports.view", None, p.detail()).await?;
        let rows = self.store.reports(before, limit + 1).await?;
        let (rows, next) = page(rows, limit, |r| r.seq.to_string());
        ok(json!({ "reports": rows, "next_cursor": next }))
    }
}

/// `{"ok":true,"entries":N}` or `{"ok":false,"entries":N,"first_bad_seq":S,"reason"}`.
pub fn verification_json(v: &Verification) -> Value {
    match v {
        Verification::Ok { entries } => json!({ "ok": true, "entries": entries }),
        Verification::Broken {
            entries,
            first_bad_seq,
            reason,
        } => json!({
            "ok": false, "entries": entries, "first_bad_seq": first_bad_seq, "reason": reason,
        }),
    }
}

//! Owns `POST /api/reports`: a recipient discloses one message's key and plaintext; the
//! report is checked ([`crate::report::verify`]) against the stored envelope and kept with
//! its verdict.
//!
//! Invariant: the disclosed key and plaintext are never logged nor stored; only the
//! plaintext's `text` member of a verified report is kept, for the admin to read.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use securechat_plugin_api::admin::NewReport;
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;

use crate::report::{self, Verdict};
use crate::routes::{json_reply, now_ms, Answer, Console, Fail};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportRequest {
    message_id: String,
    key: String,
    plaintext: String,
    reason: String,
}

const REASONS: &[&str] = &["spam", "abuse", "illegal", "other"];

fn b64(field: &str, text: &str) -> Result<Vec<u8>, Fail> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| Fail::bad(format!("{field} must be base64url without padding")))
}

/// The `text` member of a plaintext (§8.2: a JSON object, space-padded), if it has one.
fn text_of(plaintext: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(plaintext).ok()?;
    v.get("text")?.as_str().map(str::to_owned)
}

impl Console {
    pub(crate) async fn report(&self, auth: Option<String>, body: &[u8]) -> Answer {
        let who = self
            .store
            .authenticate(auth.as_deref())
            .await
            .ok_or_else(Fail::unauthorized)?;
        let req: ReportRequest = serde_json::from_slice(body)
            .map_err(|e| Fail::bad(format!("invalid report body: {e}")))?;
        if !REASONS.contains(&req.reason.as_str()) {
            return Err(Fail::bad("reason must be spam, abuse, illegal or other"));
        }
        let key = b64("key", &req.key)?;
        let plaintext = b64("plaintext", &req.plaintext)?;
        let msg = self
            .store
            .reported_message(who.username.clone(), req.message_id.clone())
            .await?
            .ok_or_else(|| Fail::not_found("message"))?;
        let verdict = report::verify(&msg.envelope, &msg.sender_sign_public_key, &key, &plaintext)
            .map_err(|e| {
                tracing::error!(error = %e, "a stored envelope does not parse");
                Fail::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal server error",
                )
            })?;
        let (verdict, detail, text) = match verdict {
            Verdict::Verified => ("verified", None, text_of(&plaintext)),
            Verdict::NotVerifiable(f) => ("not_verifiable", Some(f.code()), None),
        };
        let id = self
            .store
            .report_insert(NewReport {
                message_seq: msg.seq,
                message_id: req.message_id,
                reporter: who.username,
                sender: msg.sender,
                recipient: msg.recipient,
                server_ts: msg.server_ts,
                reported_at: now_ms(),
                reason: req.reason,
                verdict: verdict.into(),
                detail: detail.map(str::to_owned),
                text,
            })
            .await?
            .ok_or_else(|| {
                Fail::new(
                    StatusCode::CONFLICT,
                    "already_reported",
                    "you reported this message before",
                )
            })?;
        Ok(json_reply(
            StatusCode::CREATED,
            &json!({ "id": id, "verdict": verdict, "detail": detail }),
        ))
    }
}

//! Checks a running securechat server's WebSocket relay and history against
//! docs/PROTOCOL.md §6.4, §7 and §8 with the Rust client, the way a browser would use
//! them, and prints one `PASS`/`FAIL`/`NOTE` line per check (NOTE: behaviour the protocol
//! leaves open, or a deviation worth a look that is not a wire-format error). Exits
//! non-zero on any FAIL.
//!
//! Run: `cargo run -p securechat-client --example relay_check -- http://127.0.0.1:PORT`
//! against a server started with `SECURECHAT_AUTH__MIN_KDF_ITERATIONS=1000` (or pass the
//! iteration count as a second argument).

use std::time::Duration;

use anyhow::Context as _;
use securechat_client::envelope::{new_message_id, now_ms, seal_text};
use securechat_client::ws::{self, WsOptions};
use securechat_client::{
    open, Client, ClientFrame, Envelope, Error, RawEnvelope, ServerFrame, Session, WsClient,
    WsEvent,
};

const T: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Report {
    fails: usize,
}

impl Report {
    fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Display) {
        if ok {
            println!("PASS {name}");
        } else {
            self.fails += 1;
            println!("FAIL {name}: {detail}");
        }
    }

    fn note(&mut self, name: &str, detail: impl std::fmt::Display) {
        println!("NOTE {name}: {detail}");
    }
}

/// Every frame that arrives within `period`.
async fn collect(c: &mut WsClient, period: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let end = tokio::time::Instant::now() + period;
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        match c.recv_event(left).await {
            Ok(WsEvent::Text(t)) => out.push(t),
            Ok(other) => {
                out.push(format!("{other:?}"));
                break;
            }
            Err(_) => break,
        }
    }
    out
}

async fn frame_until(
    c: &mut WsClient,
    what: &str,
    pred: impl FnMut(&ServerFrame) -> bool,
) -> anyhow::Result<ServerFrame> {
    c.recv_until(T, pred)
        .await
        .with_context(|| format!("waiting for {what}"))
}

/// Replace `"from":"x"` style members in envelope JSON text.
fn doctor(env: &Envelope, f: impl FnOnce(&mut serde_json::Value)) -> anyhow::Result<String> {
    let mut v = serde_json::to_value(env)?;
    f(&mut v);
    Ok(v.to_string())
}

fn send_frame(envelope_text: &str) -> String {
    format!("{{\"type\":\"send\",\"envelope\":{envelope_text}}}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base = std::env::args()
        .nth(1)
        .context("usage: relay_check http://127.0.0.1:PORT [iterations]")?;
    let iterations: u32 = match std::env::args().nth(2) {
        Some(n) => n.parse()?,
        None => 1000,
    };
    let client = Client::new(&base)?.with_min_kdf_iterations(iterations);
    let mut r = Report::default();
    let tag = &new_message_id(&mut rand::rngs::OsRng)[..6];
    let (alice_name, bob_name) = (format!("alice_{tag}"), format!("bob_{tag}"));
    let pw = "relay check password";
    client.register(&alice_name, pw, iterations).await?;
    client.register(&bob_name, pw, iterations).await?;
    let alice: Session = client.login(&alice_name, pw).await?;
    let bob: Session = client.login(&bob_name, pw).await?;
    let alice_keys = client
        .keys(&bob.access_token, &alice_name)
        .await?
        .verify()?;
    let bob_keys = client
        .keys(&alice.access_token, &bob_name)
        .await?
        .verify()?;
    let bob_enc = securechat_client::parse_enc_spki(&bob_keys.enc_spki)?;
    let alice_enc = alice.identity.enc.to_public_key();

    // Tickets and the upgrade.
    let t = client.ws_ticket(&alice.access_token).await?;
    r.check(
        "ws-ticket answers expires_in 30",
        t.expires_in == 30,
        t.expires_in,
    );
    let no_auth = client
        .request(
            securechat_client::Method::POST,
            "/api/ws-ticket",
            None,
            None,
        )
        .await?;
    r.check(
        "ws-ticket without a token is 401",
        no_auth.status == 401,
        no_auth.status,
    );
    let e = ws::connect(&base, "not-a-ticket", None).await.err();
    r.check(
        "upgrade with a bad ticket is 401",
        e.as_ref().and_then(Error::status) == Some(401),
        format!("{e:?}"),
    );
    let e = ws::connect(&base, &t.ticket, Some("http://evil.example"))
        .await
        .err();
    r.check(
        "upgrade from a foreign Origin is 403",
        e.as_ref().and_then(Error::status) == Some(403),
        format!("{e:?}"),
    );
    let url = ws::ws_url(&base, &t.ticket)?;
    let e = ws::connect_with(&url, &WsOptions::new(None)).await.err();
    r.check(
        "upgrade without an Origin is 403",
        e.as_ref().and_then(Error::status) == Some(403),
        format!("{e:?}"),
    );
    let mut a1 = ws::connect(&base, &t.ticket, None)
        .await
        .context("alice's first socket")?;
    r.check(
        "upgrade with a ticket and the server's own Origin",
        true,
        "",
    );
    let e = ws::connect(&base, &t.ticket, None).await.err();
    r.check(
        "a used ticket is 401",
        e.as_ref().and_then(Error::status) == Some(401),
        format!("{e:?}"),
    );
    let localhost = ws::origin_of(&base).replace("127.0.0.1", "localhost");
    let t2 = client.ws_ticket(&alice.access_token).await?;
    let a_local = ws::connect(&base, &t2.ticket, Some(&localhost)).await;
    r.check(
        "Origin http://localhost:PORT is allowed",
        a_local.is_ok(),
        format!("{:?}", a_local.as_ref().err()),
    );
    if let Ok(c) = a_local {
        c.close().await?;
    }
    let mut a2 = client.connect_ws(&alice.access_token).await?;
    let mut b1 = client.connect_ws(&bob.access_token).await?;
    let seen = collect(&mut a1, Duration::from_millis(300)).await;
    r.note(
        "frames alice's socket got while others connected",
        format!("{seen:?}"),
    );
    let _ = collect(&mut a2, Duration::from_millis(100)).await;
    let _ = collect(&mut b1, Duration::from_millis(100)).await;

    // A message: ack to the sender, the same bytes to the recipient and the sender's other socket.
    let env = seal_text(
        &alice_name,
        &alice.identity,
        &bob_name,
        &bob_enc,
        "hello bob",
    )?;
    let sent = a1.send_envelope(&env).await?;
    let ack = frame_until(&mut a1, "ack", |f| f.kind() == "ack").await?;
    let (ack_seq, ack_ts) = match &ack {
        ServerFrame::Ack { id, seq, server_ts } => {
            r.check("ack carries the envelope id", *id == env.id, id);
            (*seq, *server_ts)
        }
        _ => (0, 0),
    };
    let now = now_ms();
    r.check(
        "ack server_ts is a ms timestamp near now",
        ack_ts.abs_diff(now) < 60_000,
        format!("{ack_ts} vs {now}"),
    );
    match frame_until(&mut b1, "message at bob", |f| f.kind() == "message").await? {
        ServerFrame::Message {
            seq,
            server_ts,
            envelope,
        } => {
            r.check(
                "message relayed byte for byte",
                envelope == sent,
                envelope.get(),
            );
            r.check(
                "message seq/server_ts equal the ack's",
                (seq, server_ts) == (ack_seq, ack_ts),
                format!("{seq}/{server_ts} vs {ack_seq}/{ack_ts}"),
            );
            let opened = open(
                &envelope.parse()?,
                &bob_name,
                &bob.identity,
                &alice_keys.sign_spki,
            );
            r.check(
                "bob opens it with alice's directory key",
                opened.as_ref().ok().and_then(|o| o.text()) == Some("hello bob"),
                format!("{:?}", opened.err()),
            );
        }
        other => r.check("message at bob", false, format!("{other:?}")),
    }
    let other = frame_until(&mut a2, "message at alice's other socket", |f| {
        f.kind() == "message"
    })
    .await;
    r.check(
        "the sender's other socket gets the message",
        matches!(&other, Ok(ServerFrame::Message { envelope, .. }) if *envelope == sent),
        format!("{other:?}"),
    );
    let echo = collect(&mut a1, Duration::from_millis(300)).await;
    r.check(
        "the sending socket gets no copy of its own message",
        !echo.iter().any(|t| t.contains("\"message\"")),
        format!("{echo:?}"),
    );

    // A resend of the same envelope: acked with the original seq and server_ts.
    a1.send_text(send_frame(sent.get())).await?;
    match frame_until(&mut a1, "ack of the resend", |f| f.kind() != "presence").await? {
        ServerFrame::Ack { id, seq, server_ts } => r.check(
            "a resend gets the original seq and server_ts",
            id == env.id && (seq, server_ts) == (ack_seq, ack_ts),
            format!("{seq}/{server_ts} vs {ack_seq}/{ack_ts}"),
        ),
        other => r.check("a resend is acknowledged", false, format!("{other:?}")),
    }
    let again = collect(&mut b1, Duration::from_millis(300)).await;
    r.note("frames bob got after the resend", format!("{again:?}"));

    // Byte for byte, really: another member order in keys and some spacing.
    let env2 = seal_text(&alice_name, &alice.identity, &bob_name, &bob_enc, "second")?;
    let mut reordered = env2.clone();
    reordered.keys.entries_mut().reverse();
    let odd = reordered
        .to_json()?
        .replacen(",\"from\":", ", \"from\" : ", 1);
    let odd_raw = RawEnvelope::from_text(odd.clone())?;
    a1.send(&ClientFrame::Send {
        envelope: odd_raw.clone(),
    })
    .await?;
    let ack2 = frame_until(&mut a1, "ack 2", |f| f.kind() != "presence").await?;
    r.check(
        "an envelope with spacing and keys in another order is accepted",
        ack2.kind() == "ack",
        format!("{ack2:?}"),
    );
    let seq2 = match ack2 {
        ServerFrame::Ack { seq, .. } => seq,
        _ => 0,
    };
    r.check(
        "seq increases",
        seq2 > ack_seq,
        format!("{seq2} after {ack_seq}"),
    );
    match frame_until(&mut b1, "message 2", |f| f.kind() == "message").await? {
        ServerFrame::Message { envelope, .. } => r.check(
            "spacing and member order relayed unchanged",
            envelope.get() == odd,
            format!("sent {odd}\n     got  {}", envelope.get()),
        ),
        other => r.check("message 2", false, format!("{other:?}")),
    }
    let _ = collect(&mut a2, Duration::from_millis(100)).await;

    // History and conversations.
    let h = client
        .history(&bob.access_token, &alice_name, None, None, None)
        .await?;
    let seqs: Vec<u64> = h.messages.iter().map(|m| m.seq).collect();
    r.check(
        "bob's history has both, ascending",
        seqs == vec![ack_seq, seq2],
        format!("{seqs:?}"),
    );
    if let Some(first) = h.messages.first() {
        r.check(
            "history keeps the envelope byte for byte",
            first.envelope == sent,
            first.envelope.get(),
        );
        r.check(
            "history server_ts is the ack's",
            first.server_ts == ack_ts,
            first.server_ts,
        );
        r.note("history state of an unreceipted message", &first.state);
    }
    if let Some(second) = h.messages.get(1) {
        r.check(
            "history keeps spacing and member order",
            second.envelope.get() == odd,
            second.envelope.get(),
        );
    }
    let h = client
        .history(&bob.access_token, &alice_name, Some(ack_seq), None, None)
        .await?;
    r.check(
        "after= is exclusive",
        h.messages.iter().map(|m| m.seq).collect::<Vec<_>>() == vec![seq2],
        format!("{:?}", h.messages.len()),
    );
    let h = client
        .history(&bob.access_token, &alice_name, None, Some(seq2), None)
        .await?;
    r.check(
        "before= is exclusive",
        h.messages.iter().map(|m| m.seq).collect::<Vec<_>>() == vec![ack_seq],
        format!("{:?}", h.messages.len()),
    );
    let h = client
        .history(&bob.access_token, &alice_name, None, None, Some(1))
        .await?;
    r.note(
        "limit=1 returns",
        format!(
            "seqs {:?}",
            h.messages.iter().map(|m| m.seq).collect::<Vec<_>>()
        ),
    );
    let h = client
        .history(&alice.access_token, &bob_name, None, None, None)
        .await?;
    r.check(
        "alice's history of the conversation is the same",
        h.messages.len() == 2,
        h.messages.len(),
    );
    let big = client
        .history(&bob.access_token, &alice_name, None, None, Some(201))
        .await;
    r.note(
        "limit=201 answers",
        format!(
            "{:?}",
            big.as_ref()
                .map(|h| h.messages.len())
                .map_err(|e| e.to_string())
        ),
    );
    let carol = client
        .history(&bob.access_token, "nobody_here", None, None, None)
        .await;
    r.note(
        "history with an unknown peer",
        format!(
            "{:?}",
            carol.map(|h| h.messages.len()).map_err(|e| e.to_string())
        ),
    );
    let conv = client.conversations(&bob.access_token).await?;
    let row = conv.conversations.iter().find(|c| c.peer == alice_name);
    r.check(
        "bob's conversations list alice with last_seq and 2 unread",
        row.is_some_and(|c| c.last_seq == seq2 && c.unread == 2),
        format!("{conv:?}"),
    );

    // Receipts and typing.
    b1.send(&ClientFrame::Delivered { id: env.id.clone() })
        .await?;
    let d = frame_until(&mut a1, "delivered", |f| f.kind() == "delivered").await;
    r.check(
        "delivered receipt reaches the sender",
        matches!(&d, Ok(ServerFrame::Delivered { id, by, .. }) if *id == env.id && *by == bob_name),
        format!("{d:?}"),
    );
    b1.send(&ClientFrame::Read { id: env.id.clone() }).await?;
    let rd = frame_until(&mut a1, "read", |f| f.kind() == "read").await;
    r.check(
        "read receipt reaches the sender",
        matches!(&rd, Ok(ServerFrame::Read { id, by, .. }) if *id == env.id && *by == bob_name),
        format!("{rd:?}"),
    );
    let b_after = collect(&mut b1, Duration::from_millis(200)).await;
    r.note(
        "frames bob got after sending receipts",
        format!("{b_after:?}"),
    );
    let h = client
        .history(&bob.access_token, &alice_name, None, None, None)
        .await?;
    r.note(
        "history states after delivered+read of the first",
        format!(
            "{:?}",
            h.messages
                .iter()
                .map(|m| m.state.as_str())
                .collect::<Vec<_>>()
        ),
    );
    let conv = client.conversations(&bob.access_token).await?;
    r.note(
        "bob's unread after reading the first",
        format!(
            "{:?}",
            conv.conversations.iter().find(|c| c.peer == alice_name)
        ),
    );
    a1.send(&ClientFrame::Typing {
        to: bob_name.clone(),
    })
    .await?;
    let ty = frame_until(&mut b1, "typing", |f| f.kind() == "typing").await;
    r.check(
        "typing reaches the peer",
        matches!(&ty, Ok(ServerFrame::Typing { from }) if *from == alice_name),
        format!("{ty:?}"),
    );
    let _ = collect(&mut a2, Duration::from_millis(200)).await;

    // A note to oneself: one key.
    let note = seal_text(
        &alice_name,
        &alice.identity,
        &alice_name,
        &alice_enc,
        "note",
    )?;
    let note_raw = a1.send_envelope(&note).await?;
    let na = frame_until(&mut a1, "note ack", |f| {
        matches!(f, ServerFrame::Ack { .. } | ServerFrame::Error { .. })
    })
    .await;
    r.check(
        "a note to oneself is acked",
        matches!(na, Ok(ServerFrame::Ack { .. })),
        format!("{na:?}"),
    );
    let nm = frame_until(&mut a2, "note at the other socket", |f| {
        f.kind() == "message"
    })
    .await;
    r.check(
        "a note reaches the sender's other socket",
        matches!(&nm, Ok(ServerFrame::Message { envelope, .. }) if *envelope == note_raw),
        format!("{nm:?}"),
    );
    let own = collect(&mut a1, Duration::from_millis(300)).await;
    r.note(
        "frames the sending socket got after its note",
        format!("{own:?}"),
    );

    // Offline catch-up.
    b1.close().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let env3 = seal_text(
        &alice_name,
        &alice.identity,
        &bob_name,
        &bob_enc,
        "while away",
    )?;
    let raw3 = a1.send_envelope(&env3).await?;
    let ack3 = frame_until(&mut a1, "ack 3", |f| f.kind() == "ack").await?;
    let seq3 = match ack3 {
        ServerFrame::Ack { seq, .. } => seq,
        _ => 0,
    };
    let h = client
        .history(&bob.access_token, &alice_name, Some(seq2), None, None)
        .await?;
    let caught: Vec<(u64, Option<Envelope>)> = h
        .messages
        .iter()
        .map(|m| (m.seq, m.envelope.parse().ok()))
        .collect();
    r.check(
        "an offline reader catches up from history (after=)",
        caught == vec![(seq3, Some(env3.clone()))],
        format!("{:?}", caught.iter().map(|c| c.0).collect::<Vec<_>>()),
    );
    r.check(
        "catch-up history keeps the envelope byte for byte",
        h.messages.first().is_some_and(|m| m.envelope == raw3),
        h.messages
            .first()
            .map(|m| m.envelope.get().to_owned())
            .unwrap_or_default(),
    );
    let seen = collect(&mut a2, Duration::from_millis(300)).await;
    r.note(
        "frames alice's other socket got around bob leaving",
        format!("{seen:?}"),
    );
    let mut b2 = client.connect_ws(&bob.access_token).await?;
    let seen = collect(&mut a2, Duration::from_millis(300)).await;
    r.note(
        "frames alice's other socket got when bob came back",
        format!("{seen:?}"),
    );
    let seen = collect(&mut b2, Duration::from_millis(300)).await;
    r.note(
        "frames bob's new socket got on connecting",
        format!("{seen:?}"),
    );
    b2.close().await?;
    let _ = collect(&mut a2, Duration::from_millis(200)).await;

    // Refusals, each on alice's first socket (bad frames are counted per connection).
    let mut bad_count = 0;
    let mut refusal = |name: &str, text: String, want: Option<&str>| {
        bad_count += 1;
        (name.to_owned(), text, want.map(str::to_owned))
    };
    let fresh = |text: &str| -> anyhow::Result<Envelope> {
        Ok(seal_text(
            &alice_name,
            &alice.identity,
            &bob_name,
            &bob_enc,
            text,
        )?)
    };
    let e1 = fresh("x")?;
    let cases = vec![
        refusal(
            "an envelope with an extra field",
            send_frame(&doctor(&e1, |v| v["extra"] = 1.into())?),
            Some("invalid_envelope"),
        ),
        refusal(
            "from is not the sender",
            send_frame(
                &fresh("x").and_then(|e| doctor(&e, |v| v["from"] = bob_name.clone().into()))?,
            ),
            None,
        ),
        refusal(
            "to does not exist",
            send_frame(&fresh("x").and_then(|e| doctor(&e, |v| v["to"] = "nobody_here".into()))?),
            None,
        ),
        refusal(
            "keys without the recipient",
            send_frame(&fresh("x").and_then(|e| {
                doctor(&e, |v| {
                    if let Some(k) = v["keys"].as_object_mut() {
                        k.retain(|name, _| *name != bob_name);
                    }
                })
            })?),
            None,
        ),
        refusal(
            "an id that is not a lower-case uuid v4",
            send_frame(&fresh("x").and_then(|e| doctor(&e, |v| v["id"] = "NOT-A-UUID".into()))?),
            None,
        ),
        refusal(
            "padded base64 in ct",
            send_frame(&fresh("x").and_then(|e| {
                doctor(&e, |v| {
                    let ct = v["ct"].as_str().unwrap_or_default().to_owned();
                    v["ct"] = format!("{ct}=").into();
                })
            })?),
            None,
        ),
        refusal(
            "a send without an envelope",
            "{\"type\":\"send\"}".into(),
            None,
        ),
        refusal("not JSON", "not json".into(), None),
        refusal("an unknown frame type", "{\"type\":\"bogus\"}".into(), None),
    ];
    let _ = collect(&mut a1, Duration::from_millis(100)).await;
    for (name, text, want) in cases {
        a1.send_text(text).await?;
        match a1.recv_timeout(T).await {
            Ok(ServerFrame::Error { code, id, .. }) => {
                let ok = want.as_deref().is_none_or(|w| w == code);
                r.check(
                    &format!("{name} gets an error frame"),
                    ok,
                    format!("code {code}"),
                );
                r.note(&format!("{name}: error code"), format!("{code} id={id:?}"));
            }
            other => r.check(
                &format!("{name} gets an error frame"),
                false,
                format!("{other:?}"),
            ),
        }
    }
    // Duplicate reader names in keys: ambiguous JSON; the design does not say.
    let e_dup = fresh("dup")?;
    let dup = e_dup.to_json()?.replacen(
        "\"keys\":{",
        &format!(
            "\"keys\":{{\"{bob_name}\":\"{}\",",
            e_dup.keys.get(&alice_name).unwrap_or_default()
        ),
        1,
    );
    a1.send_text(send_frame(&dup)).await?;
    let dup_answer = a1.recv_timeout(T).await;
    let dup_stored = matches!(dup_answer, Ok(ServerFrame::Ack { .. }));
    r.note(
        "an envelope whose keys name bob twice",
        format!("{dup_answer:?}"),
    );
    if matches!(dup_answer, Ok(ServerFrame::Error { .. })) {
        bad_count += 1;
    }
    a1.send_binary(vec![0u8; 16]).await?;
    let bin = a1.recv_event(T).await;
    r.note("a binary frame", format!("{bin:?}"));
    if matches!(&bin, Ok(WsEvent::Text(t)) if t.contains("\"error\"")) {
        bad_count += 1;
    }
    r.note("bad frames so far on this socket", bad_count);
    // Keep sending bad frames: the connection must be closed with 1008.
    let mut closed = None;
    for _ in 0..20 {
        if a1.send_text("still not json").await.is_err() {
            break;
        }
        match a1.recv_event(T).await {
            Ok(WsEvent::Close { code, reason }) => {
                closed = Some((code, reason));
                break;
            }
            Ok(WsEvent::Ended) | Err(_) => break,
            Ok(_) => {}
        }
    }
    r.check(
        "a stream of bad frames is closed with 1008",
        closed.as_ref().is_some_and(|(c, _)| *c == Some(1008)),
        format!("{closed:?}"),
    );

    // An oversized frame closes with 1009.
    let mut big_sock = client.connect_ws(&alice.access_token).await?;
    let _ = collect(&mut big_sock, Duration::from_millis(100)).await;
    let mut huge = fresh("x")?;
    huge.ct = securechat_client::b64::encode(vec![7u8; 70 * 1024]);
    let _ = big_sock.send_text(send_frame(&huge.to_json()?)).await;
    let ev = big_sock.recv_event(T).await;
    r.check(
        "an envelope over 64 KiB closes with 1009",
        matches!(
            &ev,
            Ok(WsEvent::Close {
                code: Some(1009),
                ..
            })
        ),
        format!("{ev:?}"),
    );
    let e = client
        .history(&alice.access_token, &bob_name, None, None, None)
        .await?;
    let expected = 3 + usize::from(dup_stored);
    r.check(
        "refused envelopes were not stored",
        e.messages.len() == expected,
        format!("{} stored, expected {expected}", e.messages.len()),
    );

    a2.close().await?;
    println!("{} failed", r.fails);
    if r.fails > 0 {
        std::process::exit(1);
    }
    Ok(())
}

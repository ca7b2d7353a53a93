//! Owns the table of handlers by job kind, and the periodic jobs declared in code (each a
//! [`Periodic`] with its handler).
//!
//! A handler is `async fn(JobContext, P) -> Result<(), JobError>` where `P` is the payload
//! type (any `serde::Deserialize`); a payload that does not parse fails the job for good.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::context::JobContext;
use super::error::{JobError, JobsError};
use super::periodic::Periodic;
use super::types::INTERNAL_QUEUE;

pub(crate) type JobFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;
pub(crate) type Handler = Arc<dyn Fn(JobContext, &str) -> JobFuture + Send + Sync>;

/// Handlers by kind, and the periodic jobs. Built before [`Queue::new`](super::Queue::new).
#[derive(Default, Clone)]
pub struct Registry {
    pub(crate) handlers: HashMap<String, Handler>,
    pub(crate) periodic: HashMap<String, Periodic>,
}

/// A kind is 1-64 of `[a-z0-9_.:-]`; `jobs.` is reserved for the queue's own jobs.
pub(crate) fn check_kind(kind: &str) -> Result<(), JobsError> {
    let ok = !kind.is_empty()
        && kind.len() <= 64
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(JobsError::Invalid(format!(
            "job kind {kind:?} must be 1-64 characters of [a-z0-9_.:-]"
        )))
    }
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers the handler of `kind`. A kind can be registered once.
    pub fn register<P, F, Fut>(&mut self, kind: &str, handler: F) -> Result<&mut Self, JobsError>
    where
        P: DeserializeOwned + Send + 'static,
        F: Fn(JobContext, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        check_kind(kind)?;
        if kind.starts_with("jobs.") {
            return Err(JobsError::Invalid(format!(
                "job kind {kind:?}: the prefix \"jobs.\" is reserved for the queue itself"
            )));
        }
        self.insert(kind, handler)
    }

    pub(crate) fn insert<P, F, Fut>(
        &mut self,
        kind: &str,
        handler: F,
    ) -> Result<&mut Self, JobsError>
    where
        P: DeserializeOwned + Send + 'static,
        F: Fn(JobContext, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        if self.handlers.contains_key(kind) {
            return Err(JobsError::Invalid(format!(
                "job kind {kind:?} is registered twice"
            )));
        }
        let kind_name = kind.to_string();
        let erased: Handler = Arc::new(move |ctx: JobContext, payload: &str| -> JobFuture {
            match serde_json::from_str::<P>(payload) {
                Ok(p) => Box::pin(handler(ctx, p)),
                Err(e) => {
                    let msg = format!("the payload of this {kind_name} job does not parse: {e}");
                    Box::pin(async move { Err(JobError::fail(msg)) })
                }
            }
        });
        self.handlers.insert(kind.to_string(), erased);
        Ok(self)
    }

    /// Registers `handler` for `periodic.kind` and schedules it every `periodic.every`.
    pub fn register_periodic<P, F, Fut>(
        &mut self,
        periodic: Periodic,
        handler: F,
    ) -> Result<&mut Self, JobsError>
    where
        P: DeserializeOwned + Send + 'static,
        F: Fn(JobContext, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        if periodic.every < Duration::from_millis(10) {
            return Err(JobsError::Invalid(format!(
                "periodic job {:?}: the interval must be at least 10 ms",
                periodic.kind
            )));
        }
        if periodic.queue == INTERNAL_QUEUE {
            return Err(JobsError::Invalid(format!(
                "periodic job {:?}: queue {INTERNAL_QUEUE} is the queue's own",
                periodic.kind
            )));
        }
        self.register(&periodic.kind.clone(), handler)?;
        self.periodic.insert(periodic.kind.clone(), periodic);
        Ok(self)
    }

    pub(crate) fn insert_periodic_internal<P, F, Fut>(
        &mut self,
        periodic: Periodic,
        handler: F,
    ) -> Result<&mut Self, JobsError>
    where
        P: DeserializeOwned + Send + 'static,
        F: Fn(JobContext, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        self.insert(&periodic.kind.clone(), handler)?;
        self.periodic.insert(periodic.kind.clone(), periodic);
        Ok(self)
    }

    pub fn kinds(&self) -> Vec<String> {
        let mut k: Vec<String> = self.handlers.keys().cloned().collect();
        k.sort();
        k
    }
}

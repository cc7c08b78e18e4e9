//! Running one call into a node's component: a request, a replication step, or a recovery
//! round. Every call runs the same way (`call_on`): on an instance of the version kept from an
//! earlier call (`reuse`), or on a new one cut from the pre-instantiated component (as
//! `wasmtime serve` does), with the node's settings, state and limits, a whole CPU budget of
//! its own, and a wall-clock bound from what the version said its longest call takes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use super::answers::{Found, KeepCell, KeptAnswers};
use super::base::NodeBase;
use super::bindings::replicating::{self, exports::replog::node::replicator::Wake};
use super::ctx::RequestCtx;
use super::detach::Detachable;
use super::failure::{Failure, Response};
use super::reuse::IdleInstance;
use super::version::{Instances, Instantiate, Needs, Version};
use crate::config::CALL_TIMEOUT_MARGIN;
use crate::outbound::Trace;

/// When a replication stream runs its next step, as the component's `replicator` decided:
/// after `after`, or as soon as the log grows if `on_append`, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextStep {
    /// Run again after this long (`None`: only when the log grows).
    pub after: Option<Duration>,
    /// Run again as soon as the log grows.
    pub on_append: bool,
}

/// What a round of the master's recovery (`replicator.recover`) asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The master is open (or fenced): recovery is over.
    Done,
    /// Not yet: run another round after this long.
    Again(Duration),
}

/// A store set up for one call, and the instance kept for it (with the calls it served), if
/// the version had one idle.
type Prepared<I> = (Store<RequestCtx>, Option<(I, u32)>);

/// A node's base and the version that serves: what its requests and replication streams
/// share.
pub(crate) struct NodeCore {
    pub(crate) base: NodeBase,
    pub(crate) current: RwLock<Arc<Version>>,
}

impl NodeCore {
    pub(crate) fn current(&self) -> Arc<Version> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Serves one request on the current version. The request waits only for the response,
    /// driving the call itself until then; a call that goes on after answering (a master may
    /// answer its client once enough secondaries hold a message, a long body is written as
    /// the client reads it) runs on in a task of its own.
    pub(crate) async fn run<B>(
        &self,
        request: hyper::Request<B>,
        id: Arc<str>,
    ) -> Result<Response, Failure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let version = self.current();
        let log_mark = self.base.state.log().mark();
        let (method, uri) = (request.method(), request.uri());
        let again = match version.answers.answer(method, uri, request.headers(), log_mark) {
            Found::Kept(kept) => return Ok(kept),
            Found::Missed { again } => again,
        };
        let (method, uri) = (method.clone(), uri.clone());
        let (mut store, kept) = self.prepare(&version, &version.handlers, Trace::Request(id));
        let keep = KeepCell::default();
        store.data_mut().keep = Some(keep.clone());
        let (sender, mut receiver) = tokio::sync::oneshot::channel();
        let answered = Arc::new(AtomicBool::new(false));
        let (req, out) = {
            let mut http = store.data_mut().http();
            let req = http.new_incoming_request(Scheme::Http, request).map_err(Failure::host)?;
            let flag = answered.clone();
            let out = http
                .new_response_outparam_from_callback(move |response| {
                    flag.store(true, Ordering::Release);
                    let _ = sender.send(response);
                })
                .map_err(Failure::host)?;
            (req, out)
        };
        let name = self.base.name.clone();
        let reuse = self.base.config.limits.reuse;
        let answers = version.answers.clone();
        let mut call = Detachable::new(async move {
            let handle = async move |store: &mut Store<RequestCtx>, proxy: &Proxy| {
                proxy.wasi_http_incoming_handler().call_handle(store, req, out).await
            };
            let result = call_on(&version, &version.handlers, (store, kept), reuse, handle).await;
            if let Err(failure) = &result
                && answered.load(Ordering::Acquire)
            {
                // The client has its answer; what failed afterwards is for the operator.
                tracing::warn!(node = %name, error = %failure, "component failed after answering");
            }
            result
        });
        // Whatever ends first: the call (its response, if it gave one, is waiting), or its
        // response (the call, if it goes on, is detached when this returns).
        let ended = tokio::select! {
            biased;
            ended = &mut call => ended,
            response = &mut receiver => match response {
                Ok(response) => {
                    let response = response.map_err(Failure::ErrorCode)?;
                    return Ok(self.kept(response, again.then_some(&answers), &keep, method, &uri));
                }
                // It dropped its response without setting it: it is ending.
                Err(_) => call.await,
            },
        };
        match receiver.try_recv() {
            Ok(response) => {
                let response = response.map_err(Failure::ErrorCode)?;
                Ok(self.kept(response, again.then_some(&answers), &keep, method, &uri))
            }
            Err(_) => Err(ended.err().unwrap_or(Failure::NoResponse)),
        }
    }

    /// `response`, kept in `answers` as it goes out if the component asked for it to be (its
    /// `keep-answer` comes before it sets its response); none: not kept (a request not asked
    /// before).
    fn kept(
        &self,
        response: Response,
        answers: Option<&Arc<KeptAnswers>>,
        keep: &KeepCell,
        method: http::Method,
        uri: &http::Uri,
    ) -> Response {
        let asked = keep.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        match (asked, answers) {
            (Some(request), Some(answers)) => {
                answers.keeping(response, method, uri, request, self.base.state.clone())
            }
            _ => response,
        }
    }

    /// One replication step toward `peer` on the current version, `None` when the version
    /// has no `replicator` (it is not a master).
    pub(crate) async fn step(&self, peer: &str) -> Result<Option<NextStep>, Failure> {
        let wake = self
            .replicator(Trace::Carried(Vec::new()), async |store, replicator| {
                replicator.replog_node_replicator().call_step(store, peer).await
            })
            .await?;
        Ok(wake.map(|Wake { after_ms, on_append }| NextStep {
            after: after_ms.map(Duration::from_millis),
            on_append,
        }))
    }

    /// One round of the master's recovery on the current version, `None` when the version has
    /// no `replicator`.
    pub(crate) async fn recover(&self) -> Result<Option<Recovery>, Failure> {
        let again = self
            .replicator(Trace::None, async |store, replicator| {
                replicator.replog_node_replicator().call_recover(store).await
            })
            .await?;
        Ok(again.map(|again| match again {
            None => Recovery::Done,
            Some(ms) => Recovery::Again(Duration::from_millis(ms)),
        }))
    }

    /// Calls the current version's `replicator` export.
    async fn replicator<R>(
        &self,
        trace: Trace,
        call: impl AsyncFnOnce(&mut Store<RequestCtx>, &replicating::Replicating) -> wasmtime::Result<R>,
    ) -> Result<Option<R>, Failure> {
        let version = self.current();
        let Some(replicators) = &version.replicators else { return Ok(None) };
        let prepared = self.prepare(&version, replicators, trace);
        let reuse = self.base.config.limits.reuse;
        call_on(&version, replicators, prepared, reuse, call).await.map(Some)
    }

    /// A store for one call of `version` on one of its worlds: one of its kept instances when
    /// it has one idle, else a new store to instantiate in. Either way set up for a call
    /// serving `trace`.
    fn prepare<P: Instantiate>(
        &self,
        version: &Version,
        instances: &Instances<P>,
        trace: Trace,
    ) -> Prepared<P::Instance> {
        let (mut store, kept) = match instances.idle.take() {
            Some(IdleInstance { store, instance, calls, .. }) => (store, Some((instance, calls))),
            None => (self.base.new_store(version.info.clone(), &version.env), None),
        };
        self.base.prepare(&mut store, trace);
        (store, kept)
    }
}

/// The one way a call runs: `call` on the instance kept for it or a new one of `instances`,
/// within `version`'s bound. A clean call gives its instance back for a later call (at most
/// `reuse` calls each); a failed one is counted, and its instance (in an unknown state)
/// dropped.
async fn call_on<P: Instantiate, R>(
    version: &Version,
    instances: &Instances<P>,
    (mut store, kept): Prepared<P::Instance>,
    reuse: u32,
    call: impl AsyncFnOnce(&mut Store<RequestCtx>, &P::Instance) -> wasmtime::Result<R>,
) -> Result<R, Failure> {
    let state = store.data().state.clone();
    let _in_use = state.metrics.runtime.in_use();
    let run = async {
        let (instance, calls) = match kept {
            Some(kept) => kept,
            None => (version.instantiate(&mut store, instances).await?, 0),
        };
        let result = call(&mut store, &instance).await?;
        wasmtime::Result::Ok((result, instance, calls))
    };
    let timeout = call_timeout(&version.needs);
    let failure = match tokio::time::timeout(timeout, run).await {
        Ok(Ok((result, instance, calls))) => {
            let memory = store.data().limits.memory();
            instances.idle.give_back(IdleInstance::new(store, instance, calls), reuse, memory);
            return Ok(result);
        }
        Ok(Err(e)) => Failure::from_guest(e),
        Err(_) => Failure::Timeout(timeout),
    };
    failure.count(&state.metrics.runtime);
    Err(failure)
}

/// The wall-clock bound on one call of a version that needs `needs`.
fn call_timeout(needs: &Needs) -> Duration {
    needs.longest_call + CALL_TIMEOUT_MARGIN
}

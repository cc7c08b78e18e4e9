//! A call into a component driven by the task of the request it serves, for as long as that
//! request waits on it, and handed to a task of its own when it outlives the request.
//!
//! Most calls end the moment they answer (the whole body fits the host's buffer), so they cost
//! the request no task and no wake-up across threads. A call that answers and goes on (a long
//! log streamed to a client that reads it only once the response is returned), and one whose
//! client went away meanwhile (hyper drops the request), runs to its end anyway: a call is
//! never cut off between two host calls because of its client, as a write must not be.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

type Call<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A call, polled where it is awaited until it ends; spawned if dropped before that.
pub(crate) struct Detachable<T: Send + 'static> {
    call: Option<Call<T>>,
}

impl<T: Send + 'static> Detachable<T> {
    pub(crate) fn new(call: impl Future<Output = T> + Send + 'static) -> Self {
        Self { call: Some(Box::pin(call)) }
    }
}

impl<T: Send + 'static> Future for Detachable<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        // Polled again after it ended, it never ends again (nothing here does that).
        let Some(call) = this.call.as_mut() else { return Poll::Pending };
        let output = std::task::ready!(call.as_mut().poll(cx));
        this.call = None;
        Poll::Ready(output)
    }
}

impl<T: Send + 'static> Drop for Detachable<T> {
    fn drop(&mut self) {
        let Some(call) = self.call.take() else { return };
        // Outside a runtime (it is shutting down) there is nowhere left to run it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(call);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_call_that_ends_where_it_is_awaited_gives_its_output() {
        assert_eq!(Detachable::new(async { 7 }).await, 7);
    }

    #[tokio::test]
    async fn a_call_dropped_before_its_end_still_runs_to_it() {
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let ended = Arc::new(AtomicBool::new(false));
        let mut call = Detachable::new({
            let ended = ended.clone();
            async move {
                let _ = released.await;
                ended.store(true, Ordering::Release);
            }
        });
        // Polled once, it waits; then its request goes away.
        assert!(futures_poll_once(&mut call).is_pending());
        drop(call);
        release.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while !ended.load(Ordering::Acquire) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the detached call ran to its end");
    }

    fn futures_poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(future).poll(&mut cx)
    }
}

//! The body guard, outermost on every route: a request's body must arrive within
//! `server.body_timeout` of its head, and the bytes of request bodies held at once across all
//! connections are budgeted ([`BODY_BUDGET`](super::BODY_BUDGET)): each chunk takes its bytes
//! from the budget as it arrives and gives them back when the request has been answered. A
//! request that finds the budget spent is answered 503 (retriable: the SDKs retry it) without
//! reading more of it; one whose body is late is answered 408; either way the connection closes.
//!
//! Both run before authentication, which may read the body to check a signature, so neither a
//! slow client nor an unauthenticated one can hold more than the budget.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use super::error::{RestError, SqsError};
use crate::domain::{RejectCode, Rejection};

/// What the guard shares across connections.
#[derive(Clone, Debug)]
pub(crate) struct Guard {
    /// The bytes of request bodies that may be held at once.
    pub budget: Arc<Semaphore>,
    /// `server.body_timeout`.
    pub body_timeout: Duration,
}

const FINE: u8 = 0;
const BUSY: u8 = 1;
const LATE: u8 = 2;

/// One request's share of the budget, and why its body was cut off, if it was.
#[derive(Default)]
struct Held {
    permits: Mutex<Vec<OwnedSemaphorePermit>>,
    refused: AtomicU8,
}

/// Why a guarded body stopped.
#[derive(Debug, thiserror::Error)]
enum Cut {
    #[error("the server is holding as many request bytes as it allows; retry")]
    Busy,
    #[error("the request body did not arrive within server.body_timeout")]
    Late,
}

/// A request body under the guard.
struct Guarded {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    budget: Arc<Semaphore>,
    held: Arc<Held>,
}

impl Guarded {
    fn cut(&self, why: Cut) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let code = match why {
            Cut::Busy => BUSY,
            Cut::Late => LATE,
        };
        self.held.refused.store(code, Ordering::SeqCst);
        Poll::Ready(Some(Err(axum::Error::new(why))))
    }
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.held.refused.load(Ordering::SeqCst) != FINE {
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return this.cut(Cut::Late);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
                    match this.budget.clone().try_acquire_many_owned(n) {
                        Ok(permit) => this.held.permits.lock().expect("lock").push(permit),
                        Err(_) => return this.cut(Cut::Busy),
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The middleware: wraps the body, runs the request, and answers for a body it cut off.
pub(crate) async fn guard(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let sqs = req.uri().path() == "/";
    let held = Arc::new(Held::default());
    let deadline = Box::pin(tokio::time::sleep(guard.body_timeout));
    let req = req.map(|inner| {
        Body::new(Guarded {
            inner,
            deadline,
            budget: guard.budget.clone(),
            held: held.clone(),
        })
    });
    let response = next.run(req).await;
    let refused = held.refused.load(Ordering::SeqCst);
    drop(held);
    let mut response = match refused {
        BUSY if sqs => SqsError::from(Rejection::new(
            RejectCode::ServiceUnavailable,
            "The server is holding as many request bytes as it allows; please retry.",
        ))
        .into_response_with(&uuid::Uuid::new_v4().to_string()),
        BUSY => RestError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the server is holding as many request bytes as it allows; please retry",
        )
        .into_response(),
        LATE if sqs => SqsError::from(Rejection::new(
            RejectCode::InvalidParameterValue,
            "The request body did not arrive within server.body_timeout.",
        ))
        .into_response_with(&uuid::Uuid::new_v4().to_string()),
        LATE => RestError::new(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            "the request body did not arrive within server.body_timeout",
        )
        .into_response(),
        _ => return response,
    };
    if refused == LATE {
        *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    }
    if refused == BUSY {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
